"""OpenRouter model ids as a pipeline writes them: `provider/model`, optionally with a variant
(`:online`, `:nitro`, ...) that changes routing but not the model, or `@preset/NAME` (a preset
saved in the OpenRouter account, which cannot be looked up offline)."""

from __future__ import annotations

# Suffixes OpenRouter reads as routing variants of the model before them. The catalogue lists
# some variants (`:free`) as models of their own; the rest are priced and checked as the base.
VARIANTS = ("online", "nitro", "floor", "exacto", "free", "thinking")
PRESET_PREFIX = "@preset/"


def is_preset(model: str) -> bool:
    return model.startswith(PRESET_PREFIX)


def split_variant(model: str) -> tuple[str, str | None]:
    """(`anthropic/claude-sonnet-4.5`, `online`) for `anthropic/claude-sonnet-4.5:online`; no variant: None."""
    base, colon, suffix = model.rpartition(":")
    if colon and suffix in VARIANTS and base:
        return base, suffix
    return model, None


def base_model(model: str) -> str:
    """The model a variant runs on; a model without a variant is its own base."""
    return split_variant(model)[0]


def web_search(model: str) -> bool:
    """`:online` is OpenRouter's shorthand for the web plugin."""
    return split_variant(model)[1] == "online"
