"""The `pipeline` command group (run lives in runcmd.py). One `except PipelineError` maps errors to exit codes."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from ..api import load_pipeline
from ..chat.catalog import offline_catalog
from ..check.rules import Finding, lint
from ..errors import PipelineError, SpecError, SpecErrors, UsageError
from ..report.tables import format_rows, money
from ..settings import Settings
from ..store import Store
from ..store.db import is_postgres, redact
from .models import models_command
from .run import run
from .test import graph_command, test_command


class _RedactKey(logging.Filter):
    """Belt and braces: the API key is never formatted into a log line, even by a third party."""

    def __init__(self, secret: str | None) -> None:
        super().__init__()
        self._secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secret and self._secret in record.getMessage():
            record.msg = record.getMessage().replace(self._secret, "[redacted]")
            record.args = ()
        return True


def _configure_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_RedactKey(os.environ.get("OPENROUTER_API_KEY")))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("runner").setLevel(level)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log detail on stderr (-vv for debug).")
@click.version_option(package_name="pipeline-runner")
def cli(verbose: int) -> None:
    """Run declarative prompt pipelines on OpenRouter, and account for every cent."""
    _configure_logging(verbose)


cli.add_command(run)
cli.add_command(test_command)
cli.add_command(graph_command)
cli.add_command(models_command)


@cli.group()
def db() -> None:
    """The database: migrate it ahead of a deployment."""


@db.command()
@click.option("--db", "target", metavar="PATH|URL", help="SQLite file or postgresql:// URL (default: $PIPELINE_DB).")
@click.option("--db-schema", metavar="NAME", help="PostgreSQL schema of the tables ($PIPELINE_DB_SCHEMA).")
def migrate(target: str | None, db_schema: str | None) -> None:
    """Create or upgrade the tables (numbered migrations, each applied once)."""
    settings = Settings.from_env(db=target, db_schema=db_schema)
    with Store(settings.db, schema=settings.db_schema) as store:
        applied = store.migrated
    where = redact(settings.db) + (f" (schema {settings.db_schema})" if settings.db_schema else "")
    if applied:
        click.echo(f"{where}: applied migration(s) {', '.join(map(str, applied))}")
    else:
        click.echo(f"{where}: up to date")


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option(
    "--format", "output_format", type=click.Choice(["text", "json", "github"]), default="text", show_default=True
)
@click.option("--strict", is_flag=True, help="Warnings fail the check too.")
def validate(paths: tuple[str, ...], output_format: str, strict: bool) -> None:
    """Check pipeline files (or folders of them) offline: loading, references, models, limits."""
    files = _pipeline_files(paths)
    catalog = offline_catalog(Settings.from_env().base_url)
    findings: list[Finding] = []
    summaries = []
    for path in files:
        try:
            pipeline = load_pipeline(path)
        except SpecError as exc:
            errors = exc.errors if isinstance(exc, SpecErrors) else (exc,)
            findings.extend(
                Finding("error", error.reason, error.path or path, error.line, error.column) for error in errors
            )
            continue
        found = lint(pipeline.spec, pipeline.graph, catalog)
        findings.extend(found)
        steps = len(pipeline.spec.steps)
        summaries.append((path, f"{steps} step{'s' if steps != 1 else ''}: {' -> '.join(pipeline.graph.order)}"))
    errors = sum(1 for finding in findings if finding.severity == "error")
    warnings = len(findings) - errors
    if output_format == "json":
        document = {"files": files, "errors": errors, "warnings": warnings, "findings": [f.as_dict() for f in findings]}
        click.echo(json.dumps(document, indent=2))
    elif output_format == "github":
        for finding in findings:
            click.echo(_github_annotation(finding))
    else:
        for path, summary in summaries:
            if not any(finding.path == path and finding.severity == "error" for finding in findings):
                click.echo(f"{path}: ok ({summary})")
        for finding in findings:
            where = ":".join(str(part) for part in (finding.path, finding.line, finding.column) if part is not None)
            click.echo(f"{where}: {finding.severity}: {finding.message}", err=True)
    if errors or warnings:
        click.echo(f"{errors} error(s), {warnings} warning(s) in {len(files)} file(s)", err=True)
    if errors or (strict and warnings):
        sys.exit(2)


def _github_annotation(finding: Finding) -> str:
    def escape(text: str, *, property_value: bool = False) -> str:
        text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        return text.replace(":", "%3A").replace(",", "%2C") if property_value else text

    parts = [f"file={escape(finding.path, property_value=True)}"]
    if finding.line is not None:
        parts.append(f"line={finding.line}")
    if finding.column is not None:
        parts.append(f"col={finding.column}")
    return f"::{finding.severity} {','.join(parts)}::{escape(finding.message)}"


def _pipeline_files(paths: tuple[str, ...]) -> list[str]:
    files: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                item
                for item in [*path.glob("*.yaml"), *path.glob("*.yml")]
                if not item.name.endswith((".cases.yaml", ".cases.yml"))  # test cases live beside their pipelines
            )
            if not found:
                raise UsageError(f"{raw}: no .yaml or .yml files in this folder")
            files.extend(str(item) for item in found)
        else:
            files.append(raw)
    return files


@cli.command()
@click.option(
    "--by",
    default="step,module,model,user",
    show_default=True,
    help="Group by: step, module, model, user, day, run, outcome, provider.",
)
@click.option("--run", "run_id", metavar="RUN_ID", help="Only this run (a --mock run too).")
@click.option("--since", metavar="7d|24h|DATE", help="Only costs recorded since then.")
@click.option("--include-mock", is_flag=True, help="Count the fake's costs of --mock runs too (they are not spend).")
@click.option(
    "--format", "output_format", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True
)
@click.option("--export", "export_format", type=click.Choice(["csv", "json"]), help="The same as --format csv|json.")
@click.option(
    "--upstream", is_flag=True, help="Add what providers billed (upstream_usd; BYOK spend) and the BYOK calls."
)
@click.option("--db", metavar="PATH|URL", help="SQLite file or postgresql:// URL (default: $PIPELINE_DB).")
@click.option("--db-schema", metavar="NAME", help="PostgreSQL schema of the tables ($PIPELINE_DB_SCHEMA).")
def costs(
    by: str,
    run_id: str | None,
    since: str | None,
    include_mock: bool,
    output_format: str,
    export_format: str | None,
    upstream: bool,
    db: str | None,
    db_schema: str | None,
) -> None:
    """What each step, module, model and user spent (--mock runs' costs only with --include-mock)."""
    output_format = export_format or output_format
    dimensions = tuple(name.strip() for name in by.split(",") if name.strip())
    with _open_store(db, db_schema) as store:
        if run_id is not None and not store.run_exists(run_id):
            raise UsageError(f"--run {run_id}: no such run in this database; `pipeline runs` lists them")
        rows = store.cost_summary(dimensions, run_id=run_id, since=since, upstream=upstream, include_mock=include_mock)
        left_out = 0 if include_mock or run_id else store.mock_cost_rows()
    if left_out:
        click.echo(
            f"left out: {left_out} cost row(s) of --mock runs (the fake's, not spend); --include-mock counts them",
            err=True,
        )
    click.echo(format_rows(rows, output_format, empty="no costs recorded"), nl=output_format != "csv")
    if output_format == "table" and upstream and rows:
        click.echo(f"upstream total: {money(sum(row['upstream_usd'] or 0 for row in rows))} (billed by providers)")
    duplicates = sum(row.get("duplicates", 0) for row in rows)
    if duplicates:
        click.echo(
            f"{duplicates} cost row(s) arrived under a generation id already recorded: kept under suffixed ids"
            " (column duplicate_of) and counted in the spend",
            err=True,
        )


def _open_store(db: str | None, schema: str | None = None) -> Store:
    settings = Settings.from_env(db=db, db_schema=schema)
    if not is_postgres(settings.db) and not Path(settings.db).exists():
        raise UsageError(f"no database at {settings.db}: run a pipeline first, or point --db / PIPELINE_DB at one")
    return Store(settings.db, schema=settings.db_schema)


@cli.command()
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), help="How many runs, newest first.")
@click.option(
    "--format", "output_format", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True
)
@click.option("--db", metavar="PATH|URL", help="SQLite file or postgresql:// URL (default: $PIPELINE_DB).")
@click.option("--db-schema", metavar="NAME", help="PostgreSQL schema of the tables ($PIPELINE_DB_SCHEMA).")
def runs(limit: int, output_format: str, db: str | None, db_schema: str | None) -> None:
    """The latest runs: status, records, calls and spend; `mock` marks the fake's runs."""
    with _open_store(db, db_schema) as store:
        store.mark_abandoned_runs()
        rows = store.runs(limit)
    if output_format == "table":
        rows = [{**row, "mock": "mock" if row["mock"] else ""} for row in rows]
    click.echo(format_rows(rows, output_format, total=False, empty="no runs recorded"), nl=output_format != "csv")


@cli.command()
@click.argument("run_id")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="table: records, then steps; csv: one row per record; json: the run, its records and steps.",
)
@click.option("--db", metavar="PATH|URL", help="SQLite file or postgresql:// URL (default: $PIPELINE_DB).")
@click.option("--db-schema", metavar="NAME", help="PostgreSQL schema of the tables ($PIPELINE_DB_SCHEMA).")
def show(run_id: str, output_format: str, db: str | None, db_schema: str | None) -> None:
    """One run: every record (invalid inputs included) and step, with outputs (nothing is lost on failure)."""
    with _open_store(db, db_schema) as store:
        store.mark_abandoned_runs()
        detail = store.run_detail(run_id)
    if detail is None:
        raise UsageError(f"no run {run_id!r} in this database; `pipeline runs` lists them")
    if output_format == "json":
        click.echo(json.dumps(detail, indent=2, ensure_ascii=False))
        return
    if output_format == "csv":
        click.echo(format_rows(_record_rows(detail["records"]), "csv"), nl=False)
        return
    run_row = detail["run"]
    click.echo(
        f"run {run_row['id']}  pipeline {run_row['pipeline']}  status {run_row['status']}"
        f"{'  mock' if run_row['mock'] else ''}  records ok {run_row['records_ok']} failed "
        f"{run_row['records_failed']}  started {run_row['started_at']}"
    )
    records = [{**row, "error_message": _shorten(row["error_message"])} for row in _record_rows(detail["records"])]
    click.echo(format_rows([_without(row, "output") for row in records], "table", empty="no records recorded"))
    steps = [_without(row, "output_json", "reasoning") for row in detail["steps"]]
    click.echo(format_rows(steps, "table", empty="no steps recorded"))


def _record_rows(records: list[dict]) -> list[dict]:
    """One flat row per record: its key, status, cost, the error's kind, step and message, and its output."""
    rows = []
    for record in records:
        error = json.loads(record["error_json"]) if record["error_json"] else {}
        rows.append(
            {
                "record_key": record["record_key"],
                "status": record["status"],
                "cost_usd": record["cost_usd"],
                "error_kind": error.get("kind"),
                "error_step": error.get("step"),
                "error_message": error.get("message"),
                "output": record["output_json"],
            }
        )
    return rows


def _without(row: dict, *names: str) -> dict:
    return {key: value for key, value in row.items() if key not in names}


def _shorten(text: str | None, width: int = 80) -> str | None:
    return text if text is None or len(text) <= width else text[: width - 3] + "..."


@cli.group("cache")
def cache_group() -> None:
    """The response cache: replies kept by endpoint (`mock` for --mock, else the API's URL) and request."""


@cache_group.command("stats")
@click.option(
    "--format", "output_format", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True
)
@click.option("--db", metavar="PATH|URL", help="SQLite file or postgresql:// URL (default: $PIPELINE_DB).")
@click.option("--db-schema", metavar="NAME", help="PostgreSQL schema of the tables ($PIPELINE_DB_SCHEMA).")
def cache_stats(output_format: str, db: str | None, db_schema: str | None) -> None:
    """Entries, size, oldest and newest entry, by endpoint and model."""
    with _open_store(db, db_schema) as store:
        rows = store.cache_stats()
    text = format_rows(rows, output_format, total=False, empty="the response cache is empty")
    click.echo(text, nl=output_format != "csv")
    if output_format == "table" and rows:
        click.echo(
            f"total: {sum(row['entries'] for row in rows)} entries, {sum(row['size_bytes'] for row in rows)} bytes, "
            f"oldest {min(row['oldest'] for row in rows)}, newest {max(row['newest'] for row in rows)}"
        )


@cache_group.command("clear")
@click.option("--mock", "mock_only", is_flag=True, help="Only the fake's replies (of --mock runs, older ones too).")
@click.option("--older-than", metavar="7d|24h|DATE", help="Only entries written before then.")
@click.option("--endpoint", metavar="URL", help="Only the replies of this endpoint, as `cache stats` names it.")
@click.option("--db", metavar="PATH|URL", help="SQLite file or postgresql:// URL (default: $PIPELINE_DB).")
@click.option("--db-schema", metavar="NAME", help="PostgreSQL schema of the tables ($PIPELINE_DB_SCHEMA).")
def cache_clear(
    mock_only: bool, older_than: str | None, endpoint: str | None, db: str | None, db_schema: str | None
) -> None:
    """Delete cache entries: every one, or those the options select (they combine)."""
    with _open_store(db, db_schema) as store:
        removed = store.clear_cache(mock_only=mock_only, older_than=older_than, endpoint=endpoint)
    click.echo(f"removed {removed} cache entr{'y' if removed == 1 else 'ies'}")


def main() -> None:
    try:
        cli.main(standalone_mode=False, prog_name="pipeline")
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except PipelineError as exc:
        click.echo(f"error: {exc}" if not isinstance(exc, SpecError) else str(exc), err=True)
        sys.exit(exc.exit_code)
