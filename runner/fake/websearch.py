"""The fake's web search: a request with the `web` plugin (or an `:online` model) gets
`url_citation` annotations on its reply, in the chat-completions shape OpenRouter sends, and pays
the search's fee (chat/plugins.py: $4 per 1,000 results, 5 unless `max_results` says otherwise)."""

from __future__ import annotations

import hashlib
from typing import Any

from ..chat.plugins import search_results, web_plugin, web_search_fee_usd

CITED = 2  # results the fake's reply cites


def citations(body: dict[str, Any], content: str | None, query: str) -> list[dict[str, Any]]:
    """`url_citation` annotations over the reply's text (none without search): the same query cites the same pages."""
    plugin = web_plugin(body)
    if plugin is None:
        return []
    text = content or ""
    digest = hashlib.sha256(query.encode("utf-8")).hexdigest()
    domains = plugin.get("include_domains") or ["example.com", "example.org"]
    found = []
    for index in range(min(CITED, search_results(plugin))):
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


def fee(body: dict[str, Any]) -> float:
    return web_search_fee_usd(body)
