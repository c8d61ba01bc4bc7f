"""OpenRouter's plugins as a request body carries them: whether it searches the web (the `web`
plugin, or an `:online` model, its shorthand) and what the search adds to the bill."""

from __future__ import annotations

from typing import Any

from ..spec.model_ids import web_search

# OpenRouter's price for its default engine (Exa): $4 per 1,000 results, 5 results unless
# `max_results` says otherwise. A provider's native search is billed by the provider.
FEE_PER_RESULT_USD = 0.004
DEFAULT_RESULTS = 5


def web_plugin(body: dict[str, Any]) -> dict[str, Any] | None:
    """The request's web search settings: its `web` plugin, `{}` for an `:online` model, None without search."""
    for plugin in body.get("plugins") or ():
        if isinstance(plugin, dict) and plugin.get("id") == "web":
            return plugin if plugin.get("enabled", True) else None
    return {} if web_search(str(body.get("model") or "")) else None


def search_results(plugin: dict[str, Any]) -> int:
    count = plugin.get("max_results")
    return count if isinstance(count, int) and count > 0 else DEFAULT_RESULTS


def web_search_fee_usd(body: dict[str, Any]) -> float:
    """What the request's web search costs on top of its tokens; 0 without search."""
    plugin = web_plugin(body)
    return 0.0 if plugin is None else round(search_results(plugin) * FEE_PER_RESULT_USD, 12)
