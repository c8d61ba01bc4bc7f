"""`pipeline costs`: spend grouped by step, module, model, user, day, run, ..."""

from __future__ import annotations

import click

from ..chat.caching import cache_saving
from ..chat.catalog import Catalog, offline_catalog
from ..errors import UsageError
from ..report.tables import format_rows, money
from ..settings import Settings
from .options import db_options, open_store, since_timestamp


@click.command()
@click.option(
    "--by",
    default="step,module,model,user",
    show_default=True,
    help="Group by: step, module, model, user, day, run, outcome, provider, cost_source, round (a tool round), "
    "item (a for_each element).",
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
        caching = store.cache_usage(dimensions, run_id=run_id, since=since, include_mock=include_mock)
        left_out = 0 if include_mock or run_id else store.mock_cost_rows()
        mock_run = run_id is not None and bool((store.run_row(run_id) or {}).get("mock"))
    if mock_run:
        click.echo(f"run {run_id} is a --mock run: these are the fake's costs, nothing was billed", err=True)
    if left_out:
        click.echo(
            f"left out: {left_out} cost row(s) of --mock runs (the fake's, not spend); --include-mock counts them",
            err=True,
        )
    if caching:
        settings = Settings.from_env()
        _add_cache_savings(rows, caching, dimensions, offline_catalog(settings.base_url, settings.cache_dir))
    click.echo(format_rows(rows, output_format, empty="no costs recorded"), nl=output_format != "csv")
    if output_format == "table" and caching and rows:
        _say_cache_savings(rows)
    if output_format == "table" and upstream and rows:
        click.echo(f"billed by providers (BYOK): {money(sum(row['byok_upstream_usd'] for row in rows))}")
    duplicates = sum(row.get("duplicates", 0) for row in rows)
    if duplicates:
        click.echo(
            f"{duplicates} cost row(s) arrived under a generation id already recorded: kept under suffixed ids"
            " (column duplicate_of) and counted in the spend",
            err=True,
        )


def _add_cache_savings(rows: list[dict], caching: list[dict], dimensions: tuple[str, ...], catalog: Catalog) -> None:
    """`cached_tokens` and `cache_saved_usd` on each row: OpenRouter's `cache_discount` where it was looked
    up, else the tokens priced from the catalogue; None (shown as -) when a model's cache price is unknown."""
    names = ["user" if name == "user" else name for name in dimensions]
    saved: dict[tuple, float | None] = {}
    tokens: dict[tuple, int] = {}
    for usage in caching:
        key = tuple(usage[name] for name in names)
        priced = cache_saving(
            catalog.models.get(usage["cache_model"] or ""), usage["unpriced_cached"], usage["unpriced_written"]
        )
        before = saved.get(key, 0.0)
        saved[key] = None if priced is None or before is None else before + priced + usage["discount_usd"]
        tokens[key] = tokens.get(key, 0) + usage["cached_tokens"]
    for row in rows:
        key = tuple(row[name] for name in names)
        row["cached_tokens"] = tokens.get(key, 0)
        value = saved.get(key, 0.0)
        row["cache_saved_usd"] = None if value is None else round(value, 10)


def _say_cache_savings(rows: list[dict]) -> None:
    known = [row["cache_saved_usd"] for row in rows if row["cache_saved_usd"] is not None]
    unknown = len(rows) - len(known)
    note = f" ({unknown} row(s) with no cache price in the catalogue: -)" if unknown else ""
    click.echo(f"prompt caching saved: {money(sum(known))}{note}")
