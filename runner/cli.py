"""The `pipeline` command: run, validate, costs. One `except PipelineError` maps errors to exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from .api import Pipeline, Settings, load_pipeline
from .errors import ConfigurationError, PipelineError, SpecError, SpecErrors, UsageError
from .results import RecordResult
from .store import SQLiteStore

log = logging.getLogger("runner")
MOCK_API_KEY = "mock-key-not-secret"


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


def parse_inputs(values: tuple[str, ...]) -> dict[str, Any]:
    """`--input '{"a": 1}'`, or repeated `--input key=value` (a string) / `--input key:=JSON`."""
    record: dict[str, Any] = {}
    for value in values:
        stripped = value.strip()
        if stripped.startswith("{"):
            try:
                parsed = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise UsageError(f"--input is not valid JSON: {exc.msg} at column {exc.colno}") from None
            record.update(parsed)
            continue
        if ":=" in value and value.index(":=") < value.index("=") + 1:
            name, raw = value.split(":=", 1)
            try:
                record[name.strip()] = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise UsageError(f"--input {name}:= needs a JSON value: {exc.msg}") from None
            continue
        if "=" not in value:
            raise UsageError(f"--input {value!r}: use a JSON object, key=value (a string) or key:=JSON")
        name, raw = value.split("=", 1)
        if not name.strip():
            raise UsageError(f"--input {value!r}: the key before '=' is empty")
        record[name.strip()] = raw
    return record


@contextlib.contextmanager
def _settings(db: str | None, mock: bool):
    """Settings from the environment; with --mock, a fake OpenRouter on 127.0.0.1 for the run's length."""
    settings = Settings.from_env(db=db)
    if not mock:
        if not settings.api_key:
            raise ConfigurationError(
                "OPENROUTER_API_KEY is not set: export it to call OpenRouter, or add --mock to run offline "
                "against the built-in fake"
            )
        yield settings
        return
    from .fake import FakeOpenRouter
    from .fakeserver import FakeServer

    with FakeServer(FakeOpenRouter()) as server:
        yield replace(settings, api_key=MOCK_API_KEY, base_url=server.base_url, models_cache=False)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--input", "inputs", multiple=True, metavar="JSON|KEY=VALUE", help="The input record (repeatable).")
@click.option("--user", "user_id", metavar="ID", help="End-user id, sent as `user` and stored with every cost.")
@click.option("--db", metavar="PATH", help="SQLite file for costs and results (default: $PIPELINE_DB).")
@click.option("--mock", is_flag=True, help="Answer from the built-in fake OpenRouter: offline, no key, no cost.")
def run(file: str, inputs: tuple[str, ...], user_id: str | None, db: str | None, mock: bool) -> None:
    """Run FILE for one input record and print its output as JSON."""
    pipeline = load_pipeline(file)
    record = pipeline.check_input(parse_inputs(inputs))
    with _settings(db, mock) as settings:
        result, run_id = asyncio.run(_run_one(pipeline, record, settings, user_id))
    click.echo(json.dumps(result.output, indent=2, ensure_ascii=False))
    calls = sum(step.attempts for step in result.steps.values())
    click.echo(f"run {run_id}: {result.status}, {calls} billed call(s), ${result.cost_usd:.6f}", err=True)
    if result.status != "ok":
        error = result.error
        click.echo(
            f"error: step '{error.step}' failed ({error.kind}) after {error.attempts} billed attempt(s); "
            f"models tried: {', '.join(error.models) or 'none'}. Details are in the log above.",
            err=True,
        )
        sys.exit(1)


async def _run_one(
    pipeline: Pipeline, record: dict, settings: Settings, user_id: str | None
) -> tuple[RecordResult, str]:
    async with pipeline.session(settings, user_id=user_id) as session:
        return await session.run(record, key="1"), session.run_id


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
def validate(paths: tuple[str, ...]) -> None:
    """Check pipeline files (or folders of them) without calling any model."""
    files = _pipeline_files(paths)
    failures = 0
    for path in files:
        try:
            pipeline = load_pipeline(path)
        except SpecErrors as exc:
            failures += 1
            for error in exc.errors:
                click.echo(f"{error}", err=True)
            continue
        except SpecError as exc:
            failures += 1
            click.echo(f"{exc}", err=True)
            continue
        order = " -> ".join(pipeline.graph.order)
        click.echo(f"{path}: ok ({len(pipeline.spec.steps)} steps: {order})")
    if failures:
        click.echo(f"{failures} of {len(files)} pipeline file(s) have errors", err=True)
        sys.exit(2)


def _pipeline_files(paths: tuple[str, ...]) -> list[str]:
    files: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
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
@click.option("--run", "run_id", metavar="RUN_ID", help="Only this run.")
@click.option("--since", metavar="7d|24h|DATE", help="Only costs recorded since then.")
@click.option(
    "--format", "output_format", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True
)
@click.option("--db", metavar="PATH", help="SQLite file (default: $PIPELINE_DB).")
def costs(by: str, run_id: str | None, since: str | None, output_format: str, db: str | None) -> None:
    """What each step, module, model and user spent."""
    dimensions = tuple(name.strip() for name in by.split(",") if name.strip())
    with _open_store(db) as store:
        rows = store.cost_summary(dimensions, run_id=run_id, since=since)
    click.echo(_format_rows(rows, output_format), nl=output_format != "csv")


def _open_store(db: str | None) -> SQLiteStore:
    settings = Settings.from_env(db=db)
    if not Path(settings.db).exists():
        raise UsageError(f"no database at {settings.db}: run a pipeline first, or point --db / PIPELINE_DB at one")
    return SQLiteStore(settings.db)


@cli.command()
@click.option("--limit", default=20, show_default=True, help="How many runs, newest first.")
@click.option(
    "--format", "output_format", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True
)
@click.option("--db", metavar="PATH", help="SQLite file (default: $PIPELINE_DB).")
def runs(limit: int, output_format: str, db: str | None) -> None:
    """The latest runs: status, records, calls and spend."""
    with _open_store(db) as store:
        rows = store.runs(limit)
    click.echo(_format_rows(rows, output_format, total=False), nl=output_format != "csv")


@cli.command()
@click.argument("run_id")
@click.option("--format", "output_format", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--db", metavar="PATH", help="SQLite file (default: $PIPELINE_DB).")
def show(run_id: str, output_format: str, db: str | None) -> None:
    """One run: every record and step, with outputs of finished steps (nothing is lost on failure)."""
    with _open_store(db) as store:
        detail = store.run_detail(run_id)
    if detail is None:
        raise UsageError(f"no run {run_id!r} in this database; `pipeline runs` lists them")
    if output_format == "json":
        click.echo(json.dumps(detail, indent=2, ensure_ascii=False))
        return
    run_row = detail["run"]
    click.echo(
        f"run {run_row['id']}  pipeline {run_row['pipeline']}  status {run_row['status']}  "
        f"records ok {run_row['records_ok']} failed {run_row['records_failed']}  started {run_row['started_at']}"
    )
    steps = [
        {key: value for key, value in row.items() if key not in ("output_json", "reasoning")} for row in detail["steps"]
    ]
    click.echo(_format_rows(steps, "table", total=True))


def _format_rows(rows: list[dict[str, Any]], output_format: str, *, total: bool = True) -> str:
    if output_format == "json":
        return json.dumps(rows, indent=2)
    if not rows:
        return "" if output_format == "csv" else "no costs recorded"
    columns = list(rows[0])
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()
    cells = [[_cell(column, row[column]) for column in columns] for row in rows]
    spent = sum(row.get("cost_usd") or 0 for row in rows)
    widths = [max(len(column), *(len(line[index]) for line in cells)) for index, column in enumerate(columns)]
    numeric = [isinstance(rows[0][column], int | float) for column in columns]

    def fmt(values):
        return "  ".join(
            value.rjust(width) if is_number else value.ljust(width)
            for value, width, is_number in zip(values, widths, numeric, strict=True)
        ).rstrip()

    lines = [fmt(columns), fmt(["-" * width for width in widths]), *(fmt(line) for line in cells)]
    if total and "cost_usd" in columns:
        lines.append(f"total: ${spent:.6f}")
    return "\n".join(lines)


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if column == "cost_usd":
        return f"${value:.6f}"
    return str(value)


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
