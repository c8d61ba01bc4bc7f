"""`pipeline runs` (the latest runs) and `pipeline show` (one run: its records and steps)."""

from __future__ import annotations

import json

import click

from ..errors import UsageError
from ..report.tables import format_rows, money
from .options import db_options, open_store


@click.command()
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), help="How many runs, newest first.")
@click.option(
    "--format", "output_format", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True
)
@db_options
def runs(limit: int, output_format: str, db: str | None, db_schema: str | None) -> None:
    """The latest runs: status, records, calls and spend; `mock` marks the fake's runs."""
    with open_store(db, db_schema) as store:
        store.mark_abandoned_runs()
        rows = store.runs(limit)
    if output_format == "table":
        rows = [{**row, "mock": "mock" if row["mock"] else ""} for row in rows]
    click.echo(format_rows(rows, output_format, total=False, empty="no runs recorded"), nl=output_format != "csv")


@click.command()
@click.argument("run_id")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="table: records, then steps; csv: one row per record; json: the run, its records and steps.",
)
@db_options
def show(run_id: str, output_format: str, db: str | None, db_schema: str | None) -> None:
    """One run: every record (invalid inputs included) and step, with outputs (nothing is lost on failure)."""
    with open_store(db, db_schema) as store:
        store.mark_abandoned_runs()
        detail = store.run_detail(run_id)
        spent = store.run_summary(run_id)  # every billed call, earlier attempts included: the figure `runs` shows
        batches = store.run_batches(run_id) if detail is not None else []
        calls = call_rows(store.run_calls(run_id))
    if detail is None:
        raise UsageError(f"no run {run_id!r} in this database; `pipeline runs` lists them")
    if output_format == "json":
        click.echo(json.dumps({**detail, "calls": calls}, indent=2, ensure_ascii=False))
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
    click.echo(
        format_rows([_without(row, "output") for row in records], "table", total=False, empty="no records recorded")
    )
    steps = [_without(row, "output_json", "reasoning") for row in detail["steps"]]
    click.echo(format_rows(steps, "table", total=False, empty="no steps recorded"))
    call_table = [{**_without(row, "providers"), "cached": "cached" if row["cached"] else ""} for row in calls]
    click.echo(format_rows(call_table, "table", total=False, empty="no calls"))
    if any(not row["cached"] for row in calls) and all(row["providers_tried"] is None for row in calls):
        click.echo(f"providers tried: not fetched; `pipeline enrich {run_id}` stores them")
    if detail["elements"]:  # for_each steps: one row per element that made a call (its tool rounds, if any)
        with_rounds = any(row["rounds"] is not None for row in detail["elements"])
        elements = detail["elements"] if with_rounds else [_without(row, "rounds") for row in detail["elements"]]
        click.echo(format_rows(elements, "table", total=False))
    if batches:  # --batch-api: each batch, its outcome and bill
        click.echo(format_rows([_without(row, "created_at", "error_message") for row in batches], "table", total=False))
    click.echo(f"total: {money(spent['cost_usd'])} ({spent['calls']} billed call(s), earlier attempts included)")


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


def call_rows(rows: list[dict]) -> list[dict]:
    """Each billed (or cached) call, with its for_each element and tool round, and the providers OpenRouter
    tried for it, as its generation record says."""
    calls = []
    for row in rows:
        tried = json.loads(row["g_provider_responses"]) if row["g_provider_responses"] else None
        calls.append(
            {
                "record_key": row["record_key"],
                "step": row["step"],
                "item_index": row["item_index"],  # the for_each element (None outside a map step)
                "round": row["round"],  # the tool round (None outside a tool step)
                "attempt": row["attempt"],
                "model": row["model"],
                "outcome": row["outcome"],
                "cached": bool(row["cached"]),
                "cost_usd": row["cost_usd"],
                "latency_ms": row["latency_ms"],
                "providers_tried": providers_text(tried) if row["g_id"] else None,
                "providers": tried,
                "generation_id": row["id"],
            }
        )
    return calls


def providers_text(tried: list | None) -> str:
    """`Amazon Bedrock 429 -> Anthropic 200`: each provider OpenRouter tried, in order, with its HTTP status."""
    if not tried:
        return "-"
    return " -> ".join(
        f"{attempt.get('provider_name') or '?'} {attempt.get('status') or '?'}"
        for attempt in tried
        if isinstance(attempt, dict)
    )


def _without(row: dict, *names: str) -> dict:
    return {key: value for key, value in row.items() if key not in names}


def _shorten(text: str | None, width: int = 80) -> str | None:
    text = text if text is None else " ".join(text.split())  # a schema mismatch's problems are one per line
    return text if text is None or len(text) <= width else text[: width - 3] + "..."
