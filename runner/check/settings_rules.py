"""`pipeline validate`'s rules for OpenRouter's settings: sampling parameters a model does not take
(left out of its requests), and a system message that starts with per-record text, which no
provider can cache (every record's prefix differs)."""

from __future__ import annotations

from collections.abc import Iterator

from jinja2 import Environment, TemplateSyntaxError, nodes

from ..chat.catalog import Catalog
from ..spec.model import ChatStep, PipelineSpec
from ..spec.model_ids import is_preset
from ..spec.settings_schema import SAMPLING
from .findings import Finding, where


def settings_findings(spec: PipelineSpec, step: ChatStep, catalog: Catalog) -> Iterator[Finding]:
    yield from _unsupported_sampling(spec, step, catalog)
    if step.prompt_cache and step.system is not None and _starts_per_record(step.system.source):
        line, column = where(spec, step, "system")
        yield Finding(
            "warning",
            f"step '{step.id}': the system message starts with text that differs per record, so its prefix is "
            "never cached; put the stable instructions first and the record's text after them (or in the prompt)",
            spec.path,
            line,
            column,
            step.id,
        )


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


def _starts_per_record(source: str) -> bool:
    """True when the template writes per-record text (a variable, a loop over one) before its stable text."""
    try:
        body = Environment().parse(source).body
    except TemplateSyntaxError:
        return False  # loading reports it
    first_is_variable = None
    for node in _in_order(body):
        if isinstance(node, nodes.Output) or (isinstance(node, nodes.TemplateData) and not node.data.strip()):
            continue
        if isinstance(node, nodes.TemplateData):
            return bool(first_is_variable)  # stable text: only a problem when something per-record came first
        if first_is_variable is None:
            first_is_variable = isinstance(node, nodes.Name) or any(True for _ in node.find_all(nodes.Name))
    return False


def _in_order(body: list[nodes.Node]) -> Iterator[nodes.Node]:
    for node in body:
        yield node
        if isinstance(node, nodes.Output):
            yield from _in_order(node.nodes)
