"""`pipeline costs`: spend grouped by step, module, model, user, day, run, ..."""

from __future__ import annotations

import click

from ..errors import UsageError
from ..report.tables import format_rows, money
from .options import db_options, open_store, since_timestamp


@click.command()
@click.option(
    "--by",
    default="step,module,model,user",
    show_default=True,
    help="Group by: step, module, model, user, day, run, outcome, provider, item (a for_each element).",
)
@click.option("--run", "run_id", metavar="RUN_ID", help="Only this run (a --mock run too).")
@click.option("--since", metavar="7d|24h|DATE", help="Only costs recorded since then.")
@click.option("--include-mock", is_flag=True, help="Count the fake's costs of --mock runs too (they are not spend).")
@click.option(
    "--format", "output_format", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True
)
@click.option("--export", "export_format", type=click.Choice(["csv", "json"]), help="The same as --format csv|json.")
@click.option(
    "--upstream", is_flag=True, help="Add what providers billed for BYOK calls (byok_upstream_usd) and the BYOK calls."
)
@db_options
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
    since = since_timestamp(since) if since is not None else None
    with open_store(db, db_schema) as store:
        if run_id is not None and not store.run_exists(run_id):
            raise UsageError(f"--run {run_id}: no such run in this database; `pipeline runs` lists them")
        rows = store.cost_summary(dimensions, run_id=run_id, since=since, upstream=upstream, include_mock=include_mock)
        left_out = 0 if include_mock or run_id else store.mock_cost_rows()
        mock_run = run_id is not None and bool((store.run_row(run_id) or {}).get("mock"))
    if mock_run:
        click.echo(f"run {run_id} is a --mock run: these are the fake's costs, nothing was billed", err=True)
    if left_out:
        click.echo(
            f"left out: {left_out} cost row(s) of --mock runs (the fake's, not spend); --include-mock counts them",
            err=True,
        )
    click.echo(format_rows(rows, output_format, empty="no costs recorded"), nl=output_format != "csv")
    if output_format == "table" and upstream and rows:
        click.echo(f"billed by providers (BYOK): {money(sum(row['byok_upstream_usd'] for row in rows))}")
    duplicates = sum(row.get("duplicates", 0) for row in rows)
    if duplicates:
        click.echo(
            f"{duplicates} cost row(s) arrived under a generation id already recorded: kept under suffixed ids"
            " (column duplicate_of) and counted in the spend",
            err=True,
        )
