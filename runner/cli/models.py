"""`pipeline models`: the model catalogue (prices, limits, capabilities), live or offline."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from ..chat.catalog import Catalog, ModelInfo, bundled_catalog, cache_path_for, load_catalog, offline_catalog
from ..chat.client import OpenRouterClient
from ..errors import ConfigurationError
from ..report.tables import format_rows
from ..settings import Settings

SOURCES = {
    "live": "from {base_url}/models",
    "cache": "from the disk cache of {base_url}/models",
    "bundled": "from the snapshot bundled with the runner",
    "none": "as the catalogue's answer held no model list",
}


@click.command("models")
@click.option("--search", metavar="TEXT", help="Only models whose id or name contains TEXT (any case).")
@click.option(
    "--format", "output_format", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True
)
@click.option("--mock", is_flag=True, help="The built-in fake's catalogue (the bundled snapshot): offline, no key.")
def models_command(search: str | None, output_format: str, mock: bool) -> None:
    """The model catalogue: context length, prices per million tokens, structured outputs, reasoning, inputs.

    With OPENROUTER_API_KEY set it is OpenRouter's live /models (cached on disk for 24 hours);
    without one, or when the network fails, the disk cache at any age, else the snapshot bundled
    with the runner.
    """
    settings = Settings.from_env()
    if mock:
        catalog = bundled_catalog()
    elif settings.api_key:
        catalog = asyncio.run(_live_catalog(settings))
    else:
        catalog = offline_catalog(settings.base_url, settings.cache_dir)
    rows = model_rows(catalog, search)
    if output_format != "json":
        rows = [_for_display(row) for row in rows]
    empty = f"no model's id or name contains {search!r}" if search else "the catalogue is empty"
    click.echo(format_rows(rows, output_format, total=False, empty=empty), nl=output_format != "csv")
    where = SOURCES[catalog.source].format(base_url=settings.base_url.rstrip("/"))
    hint = "" if settings.api_key or mock else " (set OPENROUTER_API_KEY for the live catalogue)"
    click.echo(f"{len(rows)} of {len(catalog.models)} models, {where}{hint}", err=True)


async def _live_catalog(settings: Settings) -> Catalog:
    client = OpenRouterClient(
        api_key=settings.api_key,
        base_url=settings.base_url,
        app_url=settings.app_url,
        app_name=settings.app_name,
    )
    async with client:
        try:
            return await load_catalog(
                client, cache_path_for(settings.base_url, settings.cache_dir) if settings.models_cache else None
            )
        except ConfigurationError as exc:  # nothing listens there: a listing can still come from disk
            click.echo(f"could not fetch the model catalogue ({exc}); using the disk cache or the snapshot", err=True)
            return offline_catalog(settings.base_url, settings.cache_dir)


def model_rows(catalog: Catalog, search: str | None = None) -> list[dict[str, Any]]:
    """One row per model, sorted by id; `search` matches the id or the name, ignoring case."""
    needle = search.casefold() if search else None
    return [
        _row(info)
        for info in sorted(catalog.models.values(), key=lambda info: info.id)
        if needle is None or needle in info.id.casefold() or needle in info.name.casefold()
    ]


def _row(info: ModelInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "context_length": info.context_length,
        "prompt_usd_per_1m": _per_million(info.prompt_price),
        "completion_usd_per_1m": _per_million(info.completion_price),
        "structured_outputs": "structured_outputs" in info.supported_parameters,
        "reasoning": "reasoning" in info.supported_parameters,
        "input_modalities": list(info.input_modalities),
    }


def _per_million(price_per_token: float) -> float:
    return round(price_per_token * 1_000_000, 6)  # 0.0000001 * 1e6 is 0.09999999999999999 in floats


def _for_display(row: dict[str, Any]) -> dict[str, Any]:
    """Table and CSV cells: yes/no for flags, modalities joined; JSON keeps booleans and lists."""
    return {key: _cell(value) for key, value in row.items()}


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(value) or None  # None prints as "-": the catalogue does not say
    return value
