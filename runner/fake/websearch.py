"""The fake's web search: a request with the `web` plugin (or an `:online` model) gets
`url_citation` annotations on its reply, in the chat-completions shape OpenRouter sends, and pays
the search's fee ($4 per 1,000 results, 5 results unless `max_results` says otherwise)."""

from __future__ import annotations

import hashlib
from typing import Any

from ..spec.model_ids import web_search

FEE_PER_RESULT_USD = 0.004
DEFAULT_RESULTS = 5
CITED = 2  # results the fake's reply cites


def web_plugin(body: dict[str, Any]) -> dict[str, Any] | None:
    """The request's web search settings: its `web` plugin, `{}` for an `:online` model, None without search."""
    for plugin in body.get("plugins") or ():
        if isinstance(plugin, dict) and plugin.get("id") == "web":
            return plugin if plugin.get("enabled", True) else None
    return {} if web_search(str(body.get("model") or "")) else None


def citations(body: dict[str, Any], content: str | None, query: str) -> list[dict[str, Any]]:
    """`url_citation` annotations over the reply's text (none without search): the same query cites the same pages."""
    plugin = web_plugin(body)
    if plugin is None:
        return []
    text = content or ""
    digest = hashlib.sha256(query.encode("utf-8")).hexdigest()
    domains = plugin.get("include_domains") or ["example.com", "example.org"]
    found = []
    for index in range(min(CITED, results(plugin))):
        domain = str(domains[index % len(domains)]).lstrip("*.").split("/")[0] or "example.com"
        start = min(len(text), index * len(text) // CITED)
        found.append(
            {
                "type": "url_citation",
                "url_citation": {
                    "url": f"https://{domain}/search/{digest[index * 8 : index * 8 + 8]}",
                    "title": f"Result {index + 1} for the query",
                    "content": f"A page the fake web search found ({digest[:12]}).",
                    "start_index": start,
                    "end_index": min(len(text), (index + 1) * len(text) // CITED),
                },
            }
        )
    return found


def results(plugin: dict[str, Any]) -> int:
    count = plugin.get("max_results")
    return count if isinstance(count, int) and count > 0 else DEFAULT_RESULTS


def fee(body: dict[str, Any]) -> float:
    """What the search adds to the request's cost; 0 without search."""
    plugin = web_plugin(body)
    return 0.0 if plugin is None else round(results(plugin) * FEE_PER_RESULT_USD, 12)
