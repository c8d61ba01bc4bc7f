"""`pipeline cache stats` and `pipeline cache clear`: the response cache by endpoint and model."""

from __future__ import annotations

import click

from ..report.tables import format_rows
from .options import db_options, open_store, since_timestamp


@click.group("cache")
def cache_group() -> None:
    """The response cache: replies kept by endpoint (`mock` for --mock, else the API's URL) and request."""


@cache_group.command("stats")
@click.option(
    "--format", "output_format", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True
)
@db_options
def cache_stats(output_format: str, db: str | None, db_schema: str | None) -> None:
    """Entries, size, oldest and newest entry, by endpoint and model."""
    with open_store(db, db_schema) as store:
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
@db_options
def cache_clear(
    mock_only: bool, older_than: str | None, endpoint: str | None, db: str | None, db_schema: str | None
) -> None:
    """Delete cache entries: every one, or those the options select (they combine)."""
    if older_than is not None:
        older_than = since_timestamp(older_than, option="--older-than")
    with open_store(db, db_schema) as store:
        removed = store.clear_cache(mock_only=mock_only, older_than=older_than, endpoint=endpoint)
    click.echo(f"removed {removed} cache entr{'y' if removed == 1 else 'ies'}")
