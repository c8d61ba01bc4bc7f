"""`pipeline graph`: the step DAG as Mermaid or Graphviz dot, for docs and pull-request review."""

from __future__ import annotations

from .graph import StepGraph
from .spec import PipelineSpec


def _label(spec: PipelineSpec, step_id: str) -> tuple[str, str]:
    step = spec.step(step_id)
    detail = f"{step.module} · {step.model}"
    if step.when is not None:
        detail += " · when"
    return step_id, detail


def mermaid(spec: PipelineSpec, graph: StepGraph) -> str:
    lines = ["flowchart TD"]
    for step_id in graph.order:
        name, detail = _label(spec, step_id)
        lines.append(f'    {step_id}["{name}<br/><small>{detail}</small>"]')
    for parent, child in sorted(graph.dag.edges, key=lambda edge: (graph.order.index(edge[0]), edge[1])):
        lines.append(f"    {parent} --> {child}")
    if graph.output_steps:
        lines.append('    output(["output"])')
        lines.extend(f"    {step_id} -.-> output" for step_id in graph.order if step_id in graph.output_steps)
    return "\n".join(lines) + "\n"


def dot(spec: PipelineSpec, graph: StepGraph) -> str:
    lines = [f'digraph "{spec.name}" {{', "    rankdir=TB;", "    node [shape=box, fontname=Helvetica];"]
    for step_id in graph.order:
        name, detail = _label(spec, step_id)
        lines.append(f'    {step_id} [label="{name}\\n{detail}"];')
    for parent, child in sorted(graph.dag.edges, key=lambda edge: (graph.order.index(edge[0]), edge[1])):
        lines.append(f"    {parent} -> {child};")
    if graph.output_steps:
        lines.append('    output [shape=ellipse, label="output"];')
        lines.extend(
            f"    {step_id} -> output [style=dashed];" for step_id in graph.order if step_id in graph.output_steps
        )
    lines.append("}")
    return "\n".join(lines) + "\n"
