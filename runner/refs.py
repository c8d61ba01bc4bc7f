"""What each template refers to: `steps.<id>...` chains found in the Jinja syntax tree."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import nodes

from .errors import SpecError
from .spec import PipelineSpec, Template

STEP_FIELDS = ("output", "model", "cost_usd", "usage", "reasoning", "status")

# Parsing needs no sandbox and no filters: only the syntax tree is read here.
_PARSER = jinja2.Environment()


@dataclass(frozen=True)
class Reference:
    step: str
    chain: tuple[str, ...]  # attributes after the step id: ("output", "category")
    line: int  # line in the file the template came from
    template: Template

    @property
    def text(self) -> str:
        return ".".join(("steps", self.step, *self.chain))


def parse(template: Template) -> nodes.Template:
    try:
        return _PARSER.parse(template.source)
    except jinja2.TemplateSyntaxError as exc:
        line = template.line + (exc.lineno or 1) - 1
        raise SpecError(
            f"Jinja syntax error in `{template.field}`: {exc.message}",
            path=template.path,
            line=line,
            field=template.field,
        ) from None


def references(template: Template) -> tuple[Reference, ...]:
    """Every `steps.<id>` chain in the template; bare or computed uses of `steps` are errors."""
    tree = parse(template)
    return tuple(_collect(tree, template))


def _collect(node: nodes.Node, template: Template) -> Iterator[Reference]:
    if isinstance(node, nodes.Call):
        chain = _chain(node.node)
        if chain is not None:
            # `steps.x.output.items()`: the last name is a method, not a property.
            yield _reference(chain[:-1] if len(chain) > 2 else chain, node, template)
            for child in (*node.args, *node.kwargs):
                yield from _collect(child, template)
            return
    chain = _chain(node)
    if chain is not None:
        yield _reference(chain, node, template)
        yield from _subscript_arguments(node, template)
        return
    if isinstance(node, nodes.Name) and node.name == "steps" and node.ctx == "load":
        raise SpecError(
            f"`{template.field}` uses `steps` without a step id; write steps.<id>.output so the dependency can be seen",
            path=template.path,
            line=template.line + node.lineno - 1,
            field=template.field,
        )
    for child in node.iter_child_nodes():
        yield from _collect(child, template)


def _subscript_arguments(node: nodes.Node, template: Template) -> Iterator[Reference]:
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        if isinstance(node, nodes.Getitem) and not isinstance(node.arg, nodes.Const):
            yield from _collect(node.arg, template)
        node = node.node


def _chain(node: nodes.Node) -> tuple[str, ...] | None:
    """("classify", "output", "category") for steps.classify.output.category, else None."""
    parts: list[str] = []
    while True:
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            parts.append(str(node.arg.value))
        elif isinstance(node, nodes.Getitem):
            parts.clear()  # steps.x.output[expr]: only the part before the subscript is known
        else:
            break
        node = node.node
    if isinstance(node, nodes.Name) and node.name == "steps" and parts:
        return tuple(reversed(parts))
    return None


def _reference(chain: tuple[str, ...], node: nodes.Node, template: Template) -> Reference:
    return Reference(step=chain[0], chain=chain[1:], line=template.line + node.lineno - 1, template=template)


def check_reference(reference: Reference, spec: PipelineSpec) -> None:
    """A reference must name a step, one of its fields, and a property its output schema defines."""
    if reference.step not in spec.step_ids:
        hint = difflib.get_close_matches(reference.step, spec.step_ids, n=1)
        fix = f"did you mean '{hint[0]}'?" if hint else f"steps are: {', '.join(spec.step_ids)}"
        raise _error(reference, f"`{reference.text}` refers to unknown step '{reference.step}'; {fix}")
    if not reference.chain:
        return
    field = reference.chain[0]
    if field not in STEP_FIELDS:
        hint = difflib.get_close_matches(field, STEP_FIELDS, n=1)
        fix = f"did you mean '{hint[0]}'?" if hint else f"a step has: {', '.join(STEP_FIELDS)}"
        raise _error(reference, f"`{reference.text}`: a step has no field '{field}'; {fix}")
    schema = spec.step(reference.step).schema
    if field == "output" and schema is not None:
        _check_path(reference, schema, reference.chain[1:])


def _check_path(reference: Reference, schema: Mapping[str, Any], path: tuple[str, ...]) -> None:
    for name in path:
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return
        if name not in properties:
            hint = difflib.get_close_matches(name, list(properties), n=1)
            fix = f"did you mean '{hint[0]}'?" if hint else f"it defines: {', '.join(properties)}"
            raise _error(
                reference,
                f"`{reference.text}`: the output schema of step '{reference.step}' has no property '{name}'; {fix}",
            )
        schema = properties[name]


def _error(reference: Reference, message: str) -> SpecError:
    template = reference.template
    return SpecError(f"in `{template.field}`: {message}", path=template.path, line=reference.line, field=template.field)
