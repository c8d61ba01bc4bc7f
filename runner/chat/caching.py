"""Prompt caching: which models need explicit `cache_control` breakpoints, and marking the stable
prefix (the system message) for them.

Anthropic models cache only what a breakpoint marks, and so do Gemini models before 2.5 (explicit
caching); OpenAI, Gemini 2.5 and later, and most others cache a long prefix implicitly, so their
bodies stay as they are. A prefix shorter than about 1,024 tokens is never cached, so it is not
marked either (the estimate leans high: a slightly shorter prefix may be marked, which is harmless).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING

from ..spec.model_ids import base_model
from .messages import CacheControl, Message, TextPart

if TYPE_CHECKING:
    from .catalog import ModelInfo

MIN_CACHED_TOKENS = 1024
_GEMINI_VERSION = re.compile(r"^google/gemini-(\d+(?:\.\d+)?)")


def needs_breakpoints(model: str) -> bool:
    """True for models that cache only what `cache_control` marks."""
    base = base_model(model)
    if base.startswith("anthropic/"):
        return True
    version = _GEMINI_VERSION.match(base)
    return version is not None and float(version.group(1)) < 2.5


def with_breakpoints(messages: tuple[Message, ...], model: str) -> tuple[Message, ...]:
    """The messages with a breakpoint closing the system message, when the model needs one and it is long enough."""
    if not messages or messages[0].role != "system" or not needs_breakpoints(model):
        return messages
    system = messages[0]
    if system.estimated_tokens() < MIN_CACHED_TOKENS:
        return messages
    last = system.parts[-1]
    if not isinstance(last, TextPart) or last.cache_control is not None:
        return messages
    marked = Message("system", (*system.parts[:-1], replace(last, cache_control=CacheControl())))
    return (marked, *messages[1:])


def cache_saving(info: ModelInfo | None, cached_tokens: int, write_tokens: int) -> float | None:
    """What caching saved against the full prompt price, from the catalogue's prices: reads at the
    cache-read price, less the write premium. None when the catalogue cannot price it."""
    if not (cached_tokens or write_tokens):
        return 0.0
    if info is None or (cached_tokens and info.cache_read_price is None):
        return None
    read = info.cache_read_price if info.cache_read_price is not None else info.prompt_price
    write = info.cache_write_price if info.cache_write_price is not None else info.prompt_price
    return cached_tokens * (info.prompt_price - read) - write_tokens * (write - info.prompt_price)
