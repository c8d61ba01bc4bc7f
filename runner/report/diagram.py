"""`pipeline graph`: the step DAG as Mermaid or Graphviz dot, for docs and pull-request review. Code steps
are drawn in their own shape (Mermaid's subroutine, dot's component)."""

from __future__ import annotations

from collections.abc import Iterator

from ..plan.graph import StepGraph
from ..spec.code import CodeStep
from ..spec.model import ChatStep, PipelineSpec


def _nodes(spec: PipelineSpec, graph: StepGraph) -> Iterator[tuple[str, str]]:
    """Each step with its label detail: module, model, whether a `when` guards it, and the map marker
    (`for_each: <as>`) of a step that runs once per element of a list."""
    for step_id in graph.order:
        step = spec.step(step_id)
        if isinstance(step, CodeStep):
            detail = f"code · {step.call}"
        else:
            detail = " · ".join((step.module if isinstance(step, ChatStep) else step.kind, *step.models[:1]))
        detail += " · when" if step.when is not None else ""
        yield step_id, detail + (f" · for_each: {step.for_each.name}" if step.for_each is not None else "")


def _is_code(spec: PipelineSpec, step_id: str) -> bool:
    """Code steps are drawn in their own shape: they run Python, they call no model."""
    return isinstance(spec.step(step_id), CodeStep)


def _edges(graph: StepGraph) -> list[tuple[str, str]]:
    return sorted(graph.edges, key=lambda edge: (graph.order.index(edge[0]), edge[1]))


def _into_output(graph: StepGraph) -> list[str]:
    return [step_id for step_id in graph.order if step_id in graph.output_steps]


def mermaid(spec: PipelineSpec, graph: StepGraph) -> str:
    lines = ["flowchart TD"]
    lines += [
        f'    {step_id}[["{step_id}<br/><small>{detail}</small>"]]'
        if _is_code(spec, step_id)
        else f'    {step_id}["{step_id}<br/><small>{detail}</small>"]'
        for step_id, detail in _nodes(spec, graph)
    ]
    lines += [f"    {parent} --> {child}" for parent, child in _edges(graph)]
    if graph.output_steps:
        lines.append('    output(["output"])')
        lines += [f"    {step_id} -.-> output" for step_id in _into_output(graph)]
    return "\n".join(lines) + "\n"


def dot(spec: PipelineSpec, graph: StepGraph) -> str:
    lines = [f'digraph "{spec.name}" {{', "    rankdir=TB;", "    node [shape=box, fontname=Helvetica];"]
    lines += [
        f'    {step_id} [label="{step_id}\\n{detail}"{", shape=component" if _is_code(spec, step_id) else ""}];'
        for step_id, detail in _nodes(spec, graph)
    ]
    lines += [f"    {parent} -> {child};" for parent, child in _edges(graph)]
    if graph.output_steps:
        lines.append('    output [shape=ellipse, label="output"];')
        lines += [f"    {step_id} -> output [style=dashed];" for step_id in _into_output(graph)]
    lines.append("}")
    return "\n".join(lines) + "\n"
