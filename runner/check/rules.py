"""`pipeline validate` beyond loading: the pipeline checked against the model catalogue and itself.

Rules (errors unless marked):
- a model id the catalogue does not know (the closest known ids are suggested); a variant
  (`x:online`) is checked as its base model; an `@preset/NAME` cannot be checked (warning);
- a sampling parameter the model does not take (warning: it is left out; settings_rules.py);
- per-record text in a system message (warning): on a model that needs cache breakpoints only its stable
  text before it is cached, or none of it; elsewhere a system message that starts with it is never cached;
- a schema step on a model without strict structured outputs (warning: JSON mode is used);
- `max_tokens` above the model's maximum completion tokens;
- reasoning settings on a model that does not take `reasoning` (warning);
- a `when` that compares a step's output to a value outside that property's `enum`
  (`==` can never be true: error; `!=` is always true: warning);
- a step whose output reaches nothing: no step and no `output` refers to it (warning);
- `input.<name>` that an open `input` schema does not define (warning; a closed one is a load error);
- `input.<name>` for an optional property, not guarded by `| default(...)` or `is defined` (warning:
  a record without it fails with render_error);
- code steps (calls.py): a `call` whose module or function does not exist, `args` the function does not
  take or a required argument missing; read from the source, never imported;
- `output` reading a property of a step that may be skipped (it or an ancestor has `when`): its
  output is then null and the record fails with render_error (warning);
- attachments on a model whose catalogue entry does not list their input modality (warning).
- a `when` or `for_each` of a map step that reads its element (`as`) or `item_index`: both are
  evaluated once for the whole step, before any element, so every record fails with render_error.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any

from jinja2 import nodes

from ..chat.catalog import Catalog
from ..errors import AttachmentError
from ..plan.attachments import parse_attachment
from ..plan.graph import StepGraph
from ..plan.refs import input_references, parse, references, undefined_input_property
from ..plan.render import Renderer
from ..spec.code import CodeStep
from ..spec.model import ChatStep, PipelineSpec, StepBase, Template
from ..spec.model_ids import is_preset
from .calls import code_step_problems
from .findings import Finding, where
from .settings_rules import settings_findings


def lint(spec: PipelineSpec, graph: StepGraph, catalog: Catalog) -> list[Finding]:
    findings: list[Finding] = []
    renderer = Renderer(spec, graph)
    for step in spec.steps:
        if isinstance(step, ChatStep):
            findings.extend(_models(spec, step, catalog))
            findings.extend(_attachment_modalities(spec, step, catalog))
            findings.extend(settings_findings(spec, step, catalog, renderer.system_prefix(step)))
        findings.extend(_impossible_when(spec, step))
        findings.extend(_element_outside_elements(step))
    for step in spec.steps:
        if isinstance(step, CodeStep):
            findings.extend(Finding(*problem) for problem in code_step_problems(spec, step))
    findings.extend(_dead_ends(spec, graph))
    templates = [*(template for step in spec.steps for template in step.templates()), *graph.output_templates]
    for template in templates:
        findings.extend(_input_properties(spec, template))
    for template in graph.output_templates:
        findings.extend(_skippable_output_fields(spec, graph, template))
    return sorted(findings, key=lambda finding: (finding.line or 0, finding.severity))


def _models(spec: PipelineSpec, step: ChatStep, catalog: Catalog) -> Iterator[Finding]:
    known = list(catalog.models)
    for index, model in enumerate(step.models):
        field = "model" if index == 0 else "fallback_models"
        line, column = where(spec, step, field)
        if is_preset(model):
            message = f"step '{step.id}': `{field}` '{model}' is a preset; its model and settings live in the account "
            yield Finding("warning", message + "and cannot be checked offline", spec.path, line, column, step.id)
            continue
        info = catalog.models.get(model)  # a variant (`x:online`) is checked as its base model
        if info is None:
            close = difflib.get_close_matches(model, known, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            yield Finding(
                "error",
                f"step '{step.id}': unknown model '{model}' in `{field}`{hint}",
                spec.path,
                line,
                column,
                step.id,
            )
            continue
        supported = info.supported_parameters
        if step.schema is not None and supported and "structured_outputs" not in supported:
            fallback = "JSON mode" if "response_format" in supported else "the schema in the system message"
            yield Finding(
                "warning",
                f"step '{step.id}': model '{model}' has no strict structured outputs; the runner will use {fallback} "
                "and check the reply against the schema itself",
                spec.path,
                line,
                column,
                step.id,
            )
        if info.max_completion_tokens and step.max_tokens > info.max_completion_tokens:
            tokens_line, tokens_column = where(spec, step, "max_tokens")
            yield Finding(
                "error",
                f"step '{step.id}': max_tokens {step.max_tokens} is above the {info.max_completion_tokens} completion "
                f"tokens '{model}' can produce; set max_tokens to at most {info.max_completion_tokens}",
                spec.path,
                tokens_line,
                tokens_column,
                step.id,
            )
        reasoning = step.reasoning
        asks_reasoning = (reasoning.effort not in (None, "none")) or reasoning.max_tokens is not None
        if asks_reasoning and supported and "reasoning" not in supported:
            reasoning_line, reasoning_column = where(spec, step, "reasoning")
            yield Finding(
                "warning",
                f"step '{step.id}': model '{model}' does not take reasoning settings; they will be ignored "
                "(use reasoning: {effort: none} to say so)",
                spec.path,
                reasoning_line,
                reasoning_column,
                step.id,
            )


MODALITY = {"image": "image", "pdf": "file", "audio": "audio"}  # an attachment type -> the catalogue's modality


def _attachment_types(step: ChatStep) -> tuple[set[str], bool]:
    """The types the step's attachments are known to have (written `type`, or a name's extension), and whether
    some cannot be told before a record gives them."""
    known, unknown = set(), False
    for entry in step.attachments:
        try:
            # `{{ input.id }}.png` tells its type by the end of the name; `{{ input.photo }}` does not
            known.add(parse_attachment(entry.template.source.strip(), entry.type, "").type)
        except AttachmentError:
            unknown = True
    return known, unknown


def _attachment_modalities(spec: PipelineSpec, step: ChatStep, catalog: Catalog) -> Iterator[Finding]:
    if not step.attachments:
        return
    known, unknown = _attachment_types(step)
    line, column = spec.source.where(("steps", step.id, "attachments"), key=True)
    for model in step.models:
        info = catalog.models.get(model)
        if info is None or not info.input_modalities:
            continue
        missing = sorted(kind for kind in known if MODALITY[kind] not in info.input_modalities)
        if unknown and not known and not set(MODALITY.values()) & set(info.input_modalities):
            missing = ["image, pdf or audio"]
        for kind in missing:
            parsed = " (OpenRouter's file-parser turns a PDF into text for it)" if kind == "pdf" else ""
            yield Finding(
                "warning",
                f"step '{step.id}': model '{model}' does not take {kind} input (its catalogue entry lists "
                f"{', '.join(info.input_modalities)}){parsed}; choose a model that does",
                spec.path,
                line,
                column,
                step.id,
            )


def _impossible_when(spec: PipelineSpec, step: StepBase) -> Iterator[Finding]:
    if step.when is None:
        return
    for compare in parse(step.when).find_all(nodes.Compare):
        if len(compare.ops) != 1 or compare.ops[0].op not in ("eq", "ne"):
            continue
        sides = (compare.expr, compare.ops[0].expr)
        for reference, literal in (sides, sides[::-1]):
            chain = _output_chain(reference)
            if chain is None or not isinstance(literal, nodes.Const):
                continue
            enum = _enum_of(spec, chain)
            if enum is None or literal.value in enum:
                continue
            always = compare.ops[0].op == "ne"
            line = step.when.line + compare.lineno - 1
            shown = ".".join(("steps", *chain[:1], "output", *chain[1:]))
            yield Finding(
                "warning" if always else "error",
                f"step '{step.id}': `when` compares {shown} to {literal.value!r}, which is not one of its enum values "
                f"({', '.join(map(repr, enum))}), so the condition is {'always true' if always else 'never true'}",
                step.when.path,
                line,
                None,
                step.id,
            )


def _element_outside_elements(step: StepBase) -> Iterator[Finding]:
    if step.for_each is None:
        return
    names = {step.for_each.name, "item_index"}
    for template in (step.when, step.for_each.items):
        if template is None:
            continue
        read = parse(template).find_all(nodes.Name)
        used = sorted({node.name for node in read if node.name in names and node.ctx == "load"})
        if used:
            yield Finding(
                "error",
                f"step '{step.id}': `{template.field}` reads {', '.join(used)}, but it is evaluated once for the whole "
                f"step, before any element; filter the list in `for_each` instead "
                f"(`{{{{ ... | selectattr(...) | list }}}}`) or test each element in the prompt",
                template.path,
                template.line,
                None,
                step.id,
            )


def _output_chain(node: nodes.Node) -> tuple[str, ...] | None:
    """("classify", "category") for steps.classify.output.category."""
    parts: list[str] = []
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
        elif isinstance(node.arg, nodes.Const):
            parts.append(str(node.arg.value))
        else:
            return None
        node = node.node
    if not (isinstance(node, nodes.Name) and node.name == "steps"):
        return None
    parts.reverse()
    if len(parts) < 3 or parts[1] != "output":
        return None
    return (parts[0], *parts[2:])


def _enum_of(spec: PipelineSpec, chain: tuple[str, ...]) -> tuple | None:
    if chain[0] not in spec.step_ids:
        return None
    step = spec.step(chain[0])
    schema: Any = step.output_schema
    path = chain[1:]
    if step.for_each is not None:  # steps.x.output[0].category: the element's schema, after the index
        if not path or not path[0].lstrip("-").isdigit():
            return None
        path = path[1:]
    for name in path:
        properties = schema.get("properties") if isinstance(schema, Mapping) else None
        if not isinstance(properties, Mapping) or name not in properties:
            return None
        schema = properties[name]
    enum = schema.get("enum") if isinstance(schema, Mapping) else None
    return tuple(enum) if enum else None


def _dead_ends(spec: PipelineSpec, graph: StepGraph) -> Iterator[Finding]:
    if spec.output is None:
        return  # every step's output is the record's output
    for step in spec.steps:
        if not graph.children(step.id) and step.id not in graph.output_steps:
            wasted = "runs for nothing" if isinstance(step, CodeStep) else "is paid for and thrown away"
            yield Finding(
                "warning",
                f"step '{step.id}': its output reaches nothing (no step and no `output` refers to it); it {wasted}",
                spec.path,
                step.line,
                None,
                step.id,
            )


def _input_properties(spec: PipelineSpec, template: Template) -> Iterator[Finding]:
    if spec.input_schema is None:
        return
    required = set(spec.input_schema.get("required", ()))
    for reference in input_references(template):
        if reference.guarded:
            continue
        name, _ = undefined_input_property(reference, spec.input_schema)
        if name:
            message = (
                f"`{reference.text}` in {template.label}: the `input` schema does not define '{name}', so a record "
                f"without it fails with render_error; add '{name}' to the schema's properties"
            )
        elif len(reference.chain) == 1 and reference.chain[0] not in required:
            name = reference.chain[0]
            message = (
                f"`{reference.text}` in {template.label}: '{name}' is optional in the `input` schema, so a record "
                f"without it fails with render_error; add it to `required`, or write "
                f"`{{{{ {reference.text} | default('') }}}}`"
            )
        else:
            continue
        column = template.column_of(reference.text, reference.line)
        yield Finding("warning", message, template.path, reference.line, column, template.step)


def _skippable_output_fields(spec: PipelineSpec, graph: StepGraph, template: Template) -> Iterator[Finding]:
    for reference in references(template):
        if len(reference.chain) < 2 or reference.chain[0] != "output" or reference.guarded:
            continue
        conditional = [
            step_id
            for step_id in (reference.step, *sorted(graph.ancestors[reference.step]))
            if spec.step(step_id).when is not None
        ]
        if not conditional:
            continue
        why = (
            "has a `when`"
            if conditional[0] == reference.step
            else f"depends on step '{conditional[0]}', which has a `when`"
        )
        yield Finding(
            "warning",
            f"`output` reads `{reference.text}`, but step '{reference.step}' {why}: when it is skipped its output "
            f"is null and `{reference.text}` is undefined, so the record fails with render_error; write "
            f"`(steps.{reference.step}.output or {{}}).{'.'.join(reference.chain[1:])}` or add `| default(none)`",
            template.path,
            reference.line,
            template.column_of(reference.text, reference.line),
            reference.step,
        )
