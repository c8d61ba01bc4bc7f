"""`pipeline validate`'s rules for OpenRouter's settings: sampling parameters a model does not take
(left out of its requests), and a system message with per-record text: on a model that needs cache
breakpoints only its stable text before the per-record text can be marked (none when that is too
short), and no provider can cache a system message that starts with per-record text."""

from __future__ import annotations

from collections.abc import Iterator

from jinja2 import Environment, TemplateSyntaxError, nodes

from ..chat.caching import MIN_CACHED_TOKENS, needs_breakpoints
from ..chat.catalog import Catalog
from ..chat.messages import Message
from ..plan.stable_prefix import StablePrefix
from ..spec.model import ChatStep, PipelineSpec
from ..spec.model_ids import is_preset
from ..spec.settings_schema import SAMPLING
from .findings import Finding, where

_FIX = "put the per-record text in the user prompt (`prompt`) and keep the system message the same for every record"


def settings_findings(
    spec: PipelineSpec, step: ChatStep, catalog: Catalog, system_prefix: StablePrefix | None
) -> Iterator[Finding]:
    yield from _unsupported_sampling(spec, step, catalog)
    if step.prompt_cache and step.system is not None and system_prefix is not None:
        message = _uncached_system(step, system_prefix)
        if message is not None:
            line, column = where(spec, step, "system")
            yield Finding("warning", f"step '{step.id}': {message}; {_FIX}", spec.path, line, column, step.id)


def _uncached_system(step: ChatStep, prefix: StablePrefix) -> str | None:
    """What per-record text in the system message costs this step's caching, or None when nothing."""
    if prefix.whole:
        return None
    explicit = [model for model in step.models if needs_breakpoints(model)]
    if explicit:
        models = ", ".join(explicit)
        tokens = Message.text_message("system", prefix.text).estimated_tokens()
        if prefix.text.strip() and tokens >= MIN_CACHED_TOKENS:
            return (
                f"the system message has per-record text, so on {models} only its stable text before that "
                f"(about {round(tokens):,} tokens) gets a cache breakpoint"
            )
        return (
            f"the system message has per-record text, so on {models} it gets no cache breakpoint and is never "
            "cached (a breakpoint there would write the cache on every request and never read it)"
        )
    short = Message.text_message("system", prefix.text).estimated_tokens() < MIN_CACHED_TOKENS
    if short and _stable_text_after_per_record(step.system.source):
        return "the system message starts with text that differs per record, so no provider can cache its prefix"
    return None


def _unsupported_sampling(spec: PipelineSpec, step: ChatStep, catalog: Catalog) -> Iterator[Finding]:
    for model in step.models:
        info = None if is_preset(model) else catalog.models.get(model)
        if info is None or not info.supported_parameters:
            continue
        for name in SAMPLING:
            if getattr(step, name) is not None and name not in info.supported_parameters:
                line, column = where(spec, step, name)
                yield Finding(
                    "warning",
                    f"step '{step.id}': model '{model}' does not take `{name}`; it is left out of requests to it",
                    spec.path,
                    line,
                    column,
                    step.id,
                )


def _stable_text_after_per_record(source: str) -> bool:
    """True when the template writes per-record text (a variable, a tag) before some of its stable text."""
    try:
        body = Environment().parse(source).body
    except TemplateSyntaxError:
        return False  # loading reports it
    per_record_seen = False
    for node in _in_order(body):
        if isinstance(node, nodes.Output):
            continue
        if isinstance(node, nodes.TemplateData):
            if per_record_seen and node.data.strip():
                return True
        else:
            per_record_seen = True
    return False


def _in_order(body: list[nodes.Node]) -> Iterator[nodes.Node]:
    for node in body:
        yield node
        if isinstance(node, nodes.Output):
            yield from _in_order(node.nodes)
