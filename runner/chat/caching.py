"""Prompt caching: which models need explicit `cache_control` breakpoints, and marking the stable
prefix (the system message, or its text before the first per-record text) for them.

Anthropic models cache only what a breakpoint marks, and so do Gemini models before 2.5 (explicit
caching); OpenAI, Gemini 2.5 and later, and most others cache a long prefix implicitly, so their
bodies stay as they are. A breakpoint after per-record text would make every request write the
cache (at a premium) and none read it, so text that varies per record is never marked. A prefix
shorter than about 1,024 tokens is never cached, so it is not marked either (the estimate leans
high: a slightly shorter prefix may be marked, which is harmless).
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
    """The messages with a breakpoint closing the system message's stable prefix (its leading text parts that
    do not vary per record), when the model needs one and that prefix is long enough to be cached."""
    if not messages or messages[0].role != "system" or not needs_breakpoints(model):
        return messages
    system = messages[0]
    stable = 0
    for part in system.parts:
        if not isinstance(part, TextPart) or part.varies:
            break
        stable += 1
    if stable == 0:
        return messages
    prefix = Message("system", system.parts[:stable])
    last = system.parts[stable - 1]
    if prefix.estimated_tokens() < MIN_CACHED_TOKENS or last.cache_control is not None:
        return messages
    parts = (*system.parts[: stable - 1], replace(last, cache_control=CacheControl()), *system.parts[stable:])
    return (Message("system", parts), *messages[1:])


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
