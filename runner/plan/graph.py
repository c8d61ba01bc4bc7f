"""The step DAG: edges from template references and `needs`, in an order the executor can follow.

This module builds and orders steps; it decides nothing about running them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import networkx as nx

from ..errors import SpecError, SpecErrors
from ..spec.kinds import inline_template
from ..spec.model import FrozenDict, PipelineSpec, Template
from .refs import Reference, check_input_reference, check_reference, input_references, references, template_error


@dataclass(frozen=True)
class StepGraph:
    """The ordered DAG as plain values (networkx stays inside this module), so a graph pickles."""

    order: tuple[str, ...]  # a topological order, ties broken by position in the file
    parents: Mapping[str, tuple[str, ...]]
    ancestors: Mapping[str, frozenset[str]]
    output_steps: frozenset[str]  # steps the `output` section refers to
    output_templates: tuple[Template, ...]
    edges: tuple[tuple[str, str], ...]  # (parent, child), in the order they were found

    def children(self, step_id: str) -> tuple[str, ...]:
        return tuple(child for parent, child in self.edges if parent == step_id)


def output_templates(spec: PipelineSpec) -> tuple[Template, ...]:
    """The Jinja strings in `output`, each with its line in the pipeline file."""
    return tuple(_output_strings(spec, spec.output, ("output",)))


def _output_strings(spec: PipelineSpec, value: Any, location: tuple) -> Iterator[Template]:
    if isinstance(value, str):
        field = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in location[1:])
        yield inline_template(value, spec.source, location, f"output{field}", None)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _output_strings(spec, item, (*location, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _output_strings(spec, item, (*location, index))


def build_graph(spec: PipelineSpec) -> StepGraph:
    """Check every reference and order the steps; all problems are reported together."""
    errors: list[SpecError] = []
    dag = nx.DiGraph()
    dag.add_nodes_from(spec.step_ids)
    for step in spec.steps:
        for template in step.templates():
            for reference in _checked(template, spec, errors):
                if reference.step == step.id:
                    errors.append(
                        template_error(
                            template,
                            reference.line,
                            "refers to its own output; a step can read only the steps before it",
                            written=reference.text,
                        )
                    )
                elif reference.step in spec.step_ids:
                    dag.add_edge(reference.step, step.id)
        for index, needed in enumerate(step.needs):
            if needed not in spec.step_ids:
                errors.append(
                    spec.source.error(
                        f"step '{step.id}' needs unknown step '{needed}'; steps are: {', '.join(spec.step_ids)}",
                        ("steps", step.id, "needs", index),
                        field="needs",
                    )
                )
            elif needed == step.id:
                errors.append(spec.source.error(f"step '{step.id}' needs itself", ("steps", step.id, "needs", index)))
            else:
                dag.add_edge(needed, step.id)
    outputs = output_templates(spec)
    output_steps = {reference.step for template in outputs for reference in _checked(template, spec, errors)}
    if not errors:
        try:
            cycle = nx.find_cycle(dag)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle:
            path = " -> ".join([edge[0] for edge in cycle] + [cycle[0][0]])
            first = spec.step(cycle[0][1])
            errors.append(
                SpecError(
                    f"the steps form a cycle: {path}; remove one of these references",
                    path=spec.path,
                    line=first.line,
                    field="steps",
                )
            )
    if errors:
        raise errors[0] if len(errors) == 1 else SpecErrors(errors)
    position = {step_id: index for index, step_id in enumerate(spec.step_ids)}
    order = tuple(nx.lexicographical_topological_sort(dag, key=position.__getitem__))
    return StepGraph(
        order=order,
        parents=FrozenDict(
            {step_id: tuple(sorted(dag.predecessors(step_id), key=position.__getitem__)) for step_id in order}
        ),
        ancestors=FrozenDict({step_id: frozenset(nx.ancestors(dag, step_id)) for step_id in order}),
        output_steps=frozenset(output_steps),
        output_templates=outputs,
        edges=tuple(dag.edges),
    )


def _checked(template: Template, spec: PipelineSpec, errors: list[SpecError]) -> tuple[Reference, ...]:
    try:
        found = references(template)
    except SpecError as exc:
        errors.append(exc)
        return ()
    for input_reference in input_references(template):
        try:
            check_input_reference(input_reference, spec.input_schema)
        except SpecError as exc:
            errors.append(exc)
    valid = []
    for reference in found:
        try:
            check_reference(reference, spec)
        except SpecError as exc:
            errors.append(exc)
            continue
        valid.append(reference)
    return tuple(valid)
