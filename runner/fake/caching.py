"""The fake's prompt cache, as providers bill it.

Explicit caching (Anthropic; Gemini before 2.5): only a prefix a `cache_control` breakpoint marks
is cached. The first request with it writes the cache (`cache_write_tokens`, at the model's
`input_cache_write` price), later ones with the same prefix read it (`cached_tokens`, at
`input_cache_read`). Implicit caching (OpenAI, Gemini 2.5, ...): a long system message seen before
is read at `input_cache_read`, with nothing to mark and no write charge. Prefixes shorter than
1,024 tokens are never cached. Entries live five minutes after their last use, as Anthropic's do.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..chat.caching import MIN_CACHED_TOKENS, needs_breakpoints
from ..spec.model_ids import base_model
from .replies import text_of, tokens

TTL_S = 300.0
MAX_ENTRIES = 4096


@dataclass(frozen=True)
class CacheUse:
    cached_tokens: int = 0  # read from the cache
    write_tokens: int = 0  # written to it


class PromptCache:
    def __init__(self) -> None:
        self._entries: OrderedDict[str, float] = OrderedDict()  # prefix key -> last use (monotonic)

    def priced(
        self, body: dict[str, Any], model: str, prompt_tokens: int, pricing: dict[str, Any]
    ) -> tuple[CacheUse, float]:
        """What the request reads from and writes to the cache, and its prompt's price accordingly."""
        use = self.use(body, model, prompt_tokens)
        return use, prompt_cost(pricing, prompt_tokens, use)

    def use(self, body: dict[str, Any], model: str, prompt_tokens: int) -> CacheUse:
        """What this request reads from and writes to the cache (and remembers its prefix)."""
        explicit = needs_breakpoints(model)
        prefix = _marked_prefix(body) if explicit else _system_prefix(body)
        if prefix is None:
            return CacheUse()
        text, messages = prefix
        size = min(prompt_tokens, tokens(text) + 3 * messages)
        if size < MIN_CACHED_TOKENS:
            return CacheUse()
        key = hashlib.sha256(f"{base_model(model)}\n{text}".encode()).hexdigest()
        now = time.monotonic()
        seen = self._entries.pop(key, None)
        self._entries[key] = now
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)
        if seen is not None and now - seen <= TTL_S:
            return CacheUse(cached_tokens=size)
        return CacheUse(write_tokens=size) if explicit else CacheUse()


def _marked_prefix(body: dict[str, Any]) -> tuple[str, int] | None:
    """The text up to the last `cache_control` breakpoint and how many messages it spans; None unmarked."""
    seen: list[str] = []
    found = None
    for count, message in enumerate(body.get("messages") or (), start=1):
        content = message.get("content")
        parts = content if isinstance(content, list) else [{"type": "text", "text": text_of(content)}]
        for part in parts:
            if not isinstance(part, dict):
                continue
            seen.append(
                json.dumps(part.get("text", part), sort_keys=True) if part.get("type") != "text" else part["text"]
            )
            if part.get("cache_control"):
                found = ("".join(seen), count)
    return found


def _system_prefix(body: dict[str, Any]) -> tuple[str, int] | None:
    messages = body.get("messages") or ()
    if not messages or messages[0].get("role") != "system":
        return None
    return text_of(messages[0].get("content")), 1


def prompt_cost(pricing: dict[str, Any], prompt_tokens: int, use: CacheUse) -> float:
    """The prompt's price with cached tokens at the read price and written ones at the write price."""
    price = float(pricing["prompt"])
    read = float(pricing.get("input_cache_read", price))
    write = float(pricing.get("input_cache_write", price))
    fresh = prompt_tokens - use.cached_tokens - use.write_tokens
    return round(fresh * price + use.cached_tokens * read + use.write_tokens * write, 12)


def report(usage_body: dict[str, Any], use: CacheUse) -> None:
    """The cache's tokens in a reply's `usage.prompt_tokens_details`, where OpenRouter reports them."""
    usage_body["prompt_tokens_details"].update(cached_tokens=use.cached_tokens, cache_write_tokens=use.write_tokens)


def cache_discount(pricing: dict[str, Any], use: CacheUse) -> float | None:
    """What caching saved against the full prompt price (negative for a write that costs more), as
    `GET /generation`'s `cache_discount` says; None when the cache was not used."""
    if not (use.cached_tokens or use.write_tokens):
        return None
    price = float(pricing["prompt"])
    read = float(pricing.get("input_cache_read", price))
    write = float(pricing.get("input_cache_write", price))
    return round(use.cached_tokens * (price - read) - use.write_tokens * (write - price), 12)
