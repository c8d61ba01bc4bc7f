"""`pipeline enrich RUN_ID`: fill the `generations` table for a finished run from `GET /generation`."""

from __future__ import annotations

import asyncio
import sys

import click

from ..errors import MissingAPIKey, UsageError
from ..run.generations import DEFAULT_CONCURRENCY, FetchTotals, GenerationFetcher
from ..settings import Settings
from ..store import Store
from .options import db_options, open_store


@click.command()
@click.argument("run_id")
@click.option(
    "--concurrency",
    default=DEFAULT_CONCURRENCY,
    show_default=True,
    type=click.IntRange(1, 100),
    help="Lookups in flight at once.",
)
@click.option("--refresh", is_flag=True, help="Fetch every generation again, not only those without a record.")
@db_options
def enrich(run_id: str, concurrency: int, refresh: bool, db: str | None, db_schema: str | None) -> None:
    """Store each billed call's GET /generation record: latency, the providers tried and their statuses.

    Exits 1 when OpenRouter had no record for some of them (try again later: it keeps them for a while).
    """
    settings = Settings.from_env(db=db, db_schema=db_schema)
    with open_store(db, db_schema) as store:
        row = store.run_row(run_id)
        if row is None:
            raise UsageError(f"no run {run_id!r} in this database; `pipeline runs` lists them")
        if row.get("mock"):
            raise UsageError(
                f"run {run_id} is a --mock run: the fake that answered it is gone with its generation records;"
                " run it again with --mock --fetch-generations"
            )
        ids = store.generation_ids(run_id, missing_only=not refresh)
        if not ids:
            click.echo(f"run {run_id}: every billed call already has its generation record", err=True)
            return
        if not settings.api_key:
            raise MissingAPIKey()
        totals = asyncio.run(_fetch(settings, store, ids, concurrency))
    click.echo(f"run {run_id}: {totals.fetched} of {totals.asked} generation record(s) stored", err=True)
    if totals.missing:
        click.echo(
            f"{len(totals.missing)} not found at OpenRouter (first: {totals.missing[0]});"
            f" try `pipeline enrich {run_id}` again later",
            err=True,
        )
        sys.exit(1)


async def _fetch(settings: Settings, store: Store, ids: list[str], concurrency: int) -> FetchTotals:
    fetcher = GenerationFetcher(settings.generation_client, store.add_generation, concurrency=concurrency)
    fetcher.submit_all(ids)
    totals = await fetcher.drain()
    store.flush()
    return totals


def generations_note(totals: FetchTotals | None, run_id: str) -> str:
    """What `--fetch-generations` found, for the run's summary line ('' without it)."""
    if totals is None:
        return ""
    note = f"; generation records: {totals.fetched} stored"
    if totals.missing:
        note += f", {len(totals.missing)} not found yet (pipeline enrich {run_id})"
    return note
