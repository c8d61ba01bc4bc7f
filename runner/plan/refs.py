"""What each template refers to: `steps.<id>...` chains found in the Jinja syntax tree."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import nodes

from ..errors import SpecError
from ..spec.model import PipelineSpec, Template

STEP_FIELDS = ("output", "model", "cost_usd", "usage", "reasoning", "status", "annotations")
_GUARD_FILTERS = frozenset({"default", "d"})
# Tests that handle a missing value; `none` handles a skipped step's null output, not a missing input field.
_GUARD_TESTS = {"steps": frozenset({"defined", "undefined", "none"}), "input": frozenset({"defined", "undefined"})}

# Parsing needs no sandbox and no filters: only the syntax tree is read here.
_PARSER = jinja2.Environment()


@dataclass(frozen=True)
class Reference:
    step: str
    chain: tuple[str, ...]  # attributes after the step id: ("output", "category")
    line: int  # line in the file the template came from
    template: Template
    guarded: bool = False  # under `| default(...)` or tested with `is defined`: a missing value is handled

    @property
    def text(self) -> str:
        return ".".join(("steps", self.step, *self.chain))


@dataclass(frozen=True)
class InputReference:
    chain: tuple[str, ...]  # ("customer", "name") for input.customer.name
    line: int
    template: Template
    guarded: bool

    @property
    def text(self) -> str:
        return ".".join(("input", *self.chain))


def parse(template: Template) -> nodes.Template:
    try:
        return _PARSER.parse(template.source)
    except jinja2.TemplateSyntaxError as exc:
        raise syntax_error(template, exc) from None


def syntax_error(template: Template, exc: jinja2.TemplateSyntaxError) -> SpecError:
    """Jinja's error at the line in the file (Jinja reports no column), naming the step and the field."""
    return template_error(template, template.line + (exc.lineno or 1) - 1, f"Jinja syntax error: {exc.message}")


def template_error(template: Template, line: int, message: str, *, written: str | None = None) -> SpecError:
    """An error in a template; `written` is the text it is about, to point at its column when it can be found."""
    column = template.column_of(written, line) if written else None
    return SpecError(f"{template.label}: {message}", path=template.path, line=line, column=column, field=template.field)


def references(template: Template) -> tuple[Reference, ...]:
    """Every `steps.<id>` chain in the template; bare or computed uses of `steps` are errors."""
    tree = parse(template)
    guarded = _guarded_chains(tree, "steps")
    return tuple(
        Reference(
            reference.step,
            reference.chain,
            reference.line,
            template,
            _is_guarded((reference.step, *reference.chain), guarded),
        )
        for reference in _collect(tree, template)
    )


def input_references(template: Template) -> tuple[InputReference, ...]:
    """Every `input.<property>...` chain in the template (method calls and computed subscripts end a chain)."""
    tree = parse(template)
    guarded = _guarded_chains(tree, "input")
    parents = {id(parent.node): parent for parent in tree.find_all(nodes.Getattr | nodes.Getitem | nodes.Call)}
    found = []
    for node in tree.find_all(nodes.Getattr | nodes.Getitem):
        chain = _chain(node, root="input")
        parent = parents.get(id(node))
        if chain is None or isinstance(parent, nodes.Getattr | nodes.Getitem):
            continue  # not about input, or `input.a` inside a longer `input.a.b`
        if isinstance(parent, nodes.Call):
            chain = chain[:-1]  # `input.text.upper()`: the last name is a method
        if chain:
            found.append(InputReference(chain, template.line + node.lineno - 1, template, _is_guarded(chain, guarded)))
    return tuple(found)


def _is_guarded(chain: tuple[str, ...], guarded: frozenset[tuple[str, ...]]) -> bool:
    """`x.a.b` is handled when `x.a.b` or a part of it (`x.a is defined`) is checked somewhere in the template."""
    return any(chain[:length] in guarded for length in range(1, len(chain) + 1))


def _guarded_chains(tree: nodes.Template, root: str) -> frozenset[tuple[str, ...]]:
    """Chains the template handles when missing: `x | default(...)`, `x is defined`, `x is none`."""
    guarded = set()
    for node in tree.find_all(nodes.Filter | nodes.Test):
        names = _GUARD_FILTERS if isinstance(node, nodes.Filter) else _GUARD_TESTS[root]
        if node.name in names and node.node is not None:
            chain = _chain(node.node, root=root)
            if chain is not None:
                guarded.add(chain)
    return frozenset(guarded)


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
        raise template_error(
            template,
            template.line + node.lineno - 1,
            "uses `steps` without a step id; write steps.<id>.output so the dependency can be seen",
            written="steps",
        )
    for child in node.iter_child_nodes():
        yield from _collect(child, template)


def _subscript_arguments(node: nodes.Node, template: Template) -> Iterator[Reference]:
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        if isinstance(node, nodes.Getitem) and not isinstance(node.arg, nodes.Const):
            yield from _collect(node.arg, template)
        node = node.node


def _chain(node: nodes.Node, root: str = "steps") -> tuple[str, ...] | None:
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
    if isinstance(node, nodes.Name) and node.name == root and parts:
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
    step = spec.step(reference.step)
    schema = step.output_schema
    if field == "output" and step.for_each is not None:
        _check_element_reference(reference, schema)
    elif field == "output" and schema is not None:
        _check_path(reference, schema, reference.chain[1:])
    elif field == "output" and step.kind == "chat" and len(reference.chain) > 1 and not reference.chain[1].isdigit():
        # Without a schema a chat step's output is text; another kind's (a code step's) may be any JSON.
        raise _error(
            reference,
            f"`{reference.text}`: step '{reference.step}' has no `schema`, so its output is text with no property "
            f"'{reference.chain[1]}'; use `steps.{reference.step}.output`, or give step '{reference.step}' a schema "
            f"with a property '{reference.chain[1]}'",
        )


def _check_element_reference(reference: Reference, schema: Mapping[str, Any] | None) -> None:
    """A map step's output is a list: a property is read from one element (`output[0].ok`), never from the list."""
    if len(reference.chain) < 2:
        return
    position, path = reference.chain[1], reference.chain[2:]
    if not position.lstrip("-").isdigit():  # output[0], output[-1]
        loop = "{% for element in steps." + reference.step + ".output %}{{ element." + position + " }}{% endfor %}"
        raise _error(
            reference,
            f"`{reference.text}`: step '{reference.step}' runs for_each, so its output is a list of its elements' "
            f"outputs, which has no property '{position}'; write `steps.{reference.step}.output[0].{position}` for "
            f"one element, or loop over them: `{loop}`",
        )
    if schema is not None:
        _check_path(reference, schema, path)
    elif path and not path[0].isdigit():
        raise _error(
            reference,
            f"`{reference.text}`: step '{reference.step}' has no `schema`, so each element of its output is text "
            f"with no property '{path[0]}'; give step '{reference.step}' a schema with a property '{path[0]}'",
        )


def undefined_input_property(reference: InputReference, input_schema: Mapping[str, Any] | None) -> tuple[str, bool]:
    """The first name of the chain the `input` schema does not define, and whether the schema is closed to it.

    ("", False) when every name is defined or the schema says nothing about properties there.
    """
    schema: Any = input_schema
    for name in reference.chain:
        if not isinstance(schema, Mapping):
            return "", False
        properties = schema.get("properties")
        closed = schema.get("additionalProperties") is False or schema.get("unevaluatedProperties") is False
        if not isinstance(properties, Mapping):
            return (name, True) if closed else ("", False)
        if name not in properties:
            return name, closed
        schema = properties[name]
    return "", False


def check_input_reference(reference: InputReference, input_schema: Mapping[str, Any] | None) -> None:
    """A name a closed `input` schema does not define can never be there: a load error (open schemas: a warning)."""
    name, closed = undefined_input_property(reference, input_schema)
    if not (name and closed):
        return
    properties = _properties_at(input_schema, reference.chain[: reference.chain.index(name)])
    hint = difflib.get_close_matches(name, list(properties), n=1)
    fix = f"did you mean '{hint[0]}'?" if hint else f"it defines: {', '.join(properties) or 'no properties'}"
    raise template_error(
        reference.template,
        reference.line,
        f"`{reference.text}`: the `input` schema has no property '{name}' and allows no others "
        f"(additionalProperties: false); {fix}",
        written=reference.text,
    )


def _properties_at(schema: Any, path: tuple[str, ...]) -> Mapping[str, Any]:
    for name in path:
        schema = schema["properties"][name]
    return schema.get("properties") or {}


def _check_path(reference: Reference, schema: Mapping[str, Any], path: tuple[str, ...]) -> None:
    for name in path:
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return
        if name not in properties and schema.get("additionalProperties") is not False:
            return  # an open object (a code step's schema need not be strict): the name may be there
        if name not in properties:
            hint = difflib.get_close_matches(name, list(properties), n=1)
            fix = f"did you mean '{hint[0]}'?" if hint else f"it defines: {', '.join(properties)}"
            raise _error(
                reference,
                f"`{reference.text}`: the output schema of step '{reference.step}' has no property '{name}'; {fix}",
            )
        schema = properties[name]


def _error(reference: Reference, message: str) -> SpecError:
    return template_error(reference.template, reference.line, message, written=reference.text)
