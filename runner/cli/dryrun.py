"""`pipeline run --dry-run`'s output: the catalogue it prices with (never a stop: the bundled snapshot
when the API is unreachable) and the estimate as a table with its warnings."""

from __future__ import annotations

import click

from ..api import Pipeline
from ..chat.catalog import bundled_catalog, cache_path_for, load_catalog
from ..chat.client import OpenRouterClient
from ..errors import CallError, ConfigurationError
from ..report.tables import format_rows, money
from ..run.dryrun import estimate
from ..run.files import FilesRoot
from ..settings import Settings


async def dry_run_catalog(settings: Settings):
    client = OpenRouterClient(api_key=settings.api_key, base_url=settings.base_url, require_key=False)
    async with client:
        try:
            return await load_catalog(
                client, cache_path_for(settings.base_url, settings.cache_dir) if settings.models_cache else None
            )
        except (CallError, ConfigurationError):  # a dry run calls nothing: an unreachable API does not stop it
            return bundled_catalog()


def print_estimate(
    pipeline: Pipeline, items, catalog, files: FilesRoot | None = None, *, batch_api: bool = False
) -> None:
    """`batch_api`: price as `--batch-api` would run (left off when the run streams: it uses the normal API)."""
    result = estimate(
        pipeline.spec, pipeline.renderer, catalog, items, pipeline.check_input, files, batch_api=batch_api
    )
    rows = [
        {
            "step": row.step,
            "model": row.model,
            "calls": row.calls,
            **({"max_calls": row.max_calls} if result.tool_rounds else {}),  # with every tool round
            "prompt_tokens": row.prompt_tokens,
            "low_usd": row.low_usd if row.priced else None,
            "high_usd": row.high_usd if row.priced else None,
        }
        for row in result.rows
    ]
    click.echo(format_rows(rows, "table", total=False))
    calls, most = sum(row.calls for row in result.rows), sum(row.max_calls for row in result.rows)
    rounds = f" ({most} with every tool round)" if most > calls else ""
    click.echo(
        f"{result.records} record(s), {calls} possible call(s){rounds}: "
        f"estimated {money(result.low_usd)} - {money(result.high_usd)} "
        "(prompt only - prompt plus max_tokens; fallbacks and re-asks not counted)"
    )
    for note in (*_pricing_notes(result), *result.tool_rounds):
        click.echo(note, err=True)
    if result.invalid_records:
        click.echo(f"{result.invalid_records} record(s) do not match the input schema and would fail", err=True)
    if result.render_errors:
        click.echo(f"{result.render_errors} prompt(s) could not be rendered", err=True)
    for problem in result.attachment_problems:
        click.echo(f"would fail: {problem}", err=True)
    if result.failing_lists:
        click.echo(
            f"{result.failing_lists} record(s) would fail a for_each step: its list is not a list or longer "
            "than max_items",
            err=True,
        )
    for assumption in result.assumptions:
        click.echo(assumption, err=True)
    for problem in result.stand_in_problems:
        click.echo(f"no schema-valid stand-in output for {problem}", err=True)
    unpriced = sorted({row.model for row in result.rows if not row.priced})
    if unpriced:
        click.echo(f"no price in the model catalogue for: {', '.join(unpriced)}", err=True)


def _pricing_notes(result) -> list[str]:
    """How the Batch API and prompt caching are priced, so neither changes the numbers unannounced."""
    notes = []
    if result.batch_api:
        batched, calls = sum(row.batched_calls for row in result.rows), sum(row.calls for row in result.rows)
        notes.append(
            f"--batch-api: {batched} of {calls} call(s) priced at half the normal price, as the Batch API typically "
            "bills (steps with `batch: false` and requests with attachments use the normal API)"
        )
    for row in result.rows:
        if row.cache_prefix_tokens:
            notes.append(
                f"prompt caching: step '{row.step}' marks about {row.cache_prefix_tokens:,} prompt tokens a call "
                f"for {row.model}'s cache: the low estimate writes them once (cache-write price) and reads them "
                "after that (cache-read price), the high one writes them on every call"
            )
    return notes
