"""Jinja rendering in the sandbox: prompts, `when` conditions and the record's output.

Input values reach templates as data (context variables) and are never compiled themselves,
so `{{ 7*7 }}` inside a record stays literal text. Templates may include or import files of the
pipeline's folder only, read once when the pipeline loads (includes.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import StrictUndefined, nodes
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import missing

from ..chat.messages import Message, TextPart
from ..errors import RenderError
from ..spec.model import ChatStep, PipelineSpec, StepBase, Template, thaw
from ..spec.strict import json_type
from .attachments import Attachment, parse_attachments
from .graph import StepGraph
from .includes import IncludedTemplates, included_sources
from .refs import syntax_error
from .stable_prefix import StablePrefix, stable_prefix

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{-?(?P<expression>.*?)-?\}\}\s*$", re.DOTALL)
# Python's names for JSON's types, as they appear in TypeError messages ('int', "int" or a bare str).
_JSON_NAMES = {
    "NoneType": "null",
    "bool": "boolean",
    "int": "number",
    "float": "number",
    "str": "string",
    "dict": "object",
    "list": "array",
    "tuple": "array",
}
_PYTHON_TYPE = re.compile(r"\b(" + "|".join(_JSON_NAMES) + r")\b")
_FALSE_WORDS = frozenset({"", "false", "no", "0", "none", "null", "off"})


class _DataFirstSandbox(SandboxedEnvironment):
    """`x.items`, `steps.copy`: for mappings a key wins over a method of the same name.

    Step ids and JSON properties are data; Jinja's default would return dict.items or dict.copy.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


class _JsonUndefined(StrictUndefined):
    """Undefined values explained in JSON words: "null has no property 'city'", not "'None' has no attribute"."""

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        if self._undefined_obj is missing:
            return f"{self._undefined_name!r} is undefined"
        owner = json_type(self._undefined_obj)
        if owner == "null":
            owner += " (a skipped step's output, or a null value)"
        if not isinstance(self._undefined_name, str):
            return f"{owner} has no element {self._undefined_name!r}"
        return f"{owner} has no property {self._undefined_name!r}"


def _environment() -> SandboxedEnvironment:
    environment = _DataFirstSandbox(undefined=_JsonUndefined, autoescape=False, keep_trailing_newline=False)
    environment.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "sort_keys": False}
    return environment


def _pipeline_folder_loader(environment: SandboxedEnvironment, spec: PipelineSpec, graph: StepGraph):
    """`{% include %}` and `{% import %}` serve the files of the pipeline's folder its templates name (includes.py)."""
    templates = [*(template for step in spec.steps for template in step.templates()), *graph.output_templates]
    folder = Path(spec.path).resolve().parent
    return IncludedTemplates(
        included_sources(templates, folder, lambda source, path: environment.parse(source, filename=path))
    )


@dataclass(frozen=True)
class Compiled:
    """One template, compiled once: text rendering, or native evaluation for a lone `{{ expression }}`."""

    template: Template
    evaluate: Callable[[Mapping[str, Any]], Any]


def _compile(environment: SandboxedEnvironment, template: Template) -> Compiled:
    """Compile at load time; what Jinja refuses only when compiling (an unknown filter or test) is a load error."""
    try:
        return _compile_checked(environment, template)
    except jinja2.TemplateSyntaxError as exc:
        raise syntax_error(template, exc) from None


def _compile_checked(environment: SandboxedEnvironment, template: Template) -> Compiled:
    match = _SINGLE_EXPRESSION.match(template.source)
    if match and _is_single_output(environment, template.source):
        expression = environment.compile_expression(match.group("expression"), undefined_to_none=False)
        _flatten_globals(expression._template)
        return Compiled(template, lambda context: expression(**context))
    compiled = environment.from_string(template.source)
    _flatten_globals(compiled)
    return Compiled(template, compiled.render)


def _flatten_globals(compiled: jinja2.Template) -> None:
    """Jinja copies a template's globals into every render's context; a plain dict copies far
    faster than the ChainMap it starts as (a few microseconds a render, thousands of renders)."""
    compiled.globals = dict(compiled.globals)


def _is_single_output(environment: SandboxedEnvironment, source: str) -> bool:
    body = environment.parse(source).body
    return (
        len(body) == 1
        and isinstance(body[0], nodes.Output)
        and len(body[0].nodes) == 1
        and not isinstance(body[0].nodes[0], nodes.TemplateData)
    )


class Renderer:
    """All templates of one pipeline, compiled at load time and rendered per record."""

    def __init__(self, spec: PipelineSpec, graph: StepGraph) -> None:
        environment = _environment()
        environment.loader = _pipeline_folder_loader(environment, spec, graph)
        self._graph = graph
        chat_steps = [step for step in spec.steps if isinstance(step, ChatStep)]
        self._prompts = {step.id: _compile(environment, step.prompt) for step in chat_steps}
        self._systems = {step.id: _compile(environment, step.system) for step in chat_steps if step.system}
        self._system_prefixes = {
            step.id: stable_prefix(environment, step.system.source) for step in chat_steps if step.system
        }
        self._attachments = {
            step.id: tuple((_compile(environment, entry.template), entry.type) for entry in step.attachments)
            for step in chat_steps
            if step.attachments
        }
        self._templates = {
            (step.id, template.field): _compile(environment, template)
            for step in spec.steps
            if not isinstance(step, ChatStep)
            for template in step.templates()
        }
        self._whens = {step.id: _compile(environment, step.when) for step in spec.steps if step.when}
        self._lists = {
            step.id: _compile(environment, step.for_each.items) for step in spec.steps if step.for_each is not None
        }
        # A map step's templates also see its element (under its `as` name) and the element's item_index.
        self._element_names = {
            step.id: (step.for_each.name, "item_index") for step in spec.steps if step.for_each is not None
        }
        if spec.output is None:
            # No `output` section: the record is every step's output, by step id.
            self._output = lambda context: {key: view["output"] for key, view in context["steps"].items()}
        else:
            self._output = _compile_output(environment, spec.output, iter(graph.output_templates))

    def messages(self, step: ChatStep, context: Mapping[str, Any]) -> tuple[Message, ...]:
        scoped = self._scoped(step.id, context)
        prompt = Message.text_message("user", _text(self._prompts[step.id], scoped))
        if step.id in self._systems:
            system = _text(self._systems[step.id], scoped)
            return (Message("system", _system_parts(system, self._system_prefixes[step.id])), prompt)
        return (prompt,)

    def system_prefix(self, step: ChatStep) -> StablePrefix | None:
        """What the step's system message writes before its first per-record text; None without one."""
        return self._system_prefixes.get(step.id)

    def attachments(self, step: ChatStep, context: Mapping[str, Any]) -> tuple[Attachment, ...]:
        """The step's attachments for this record, typed and checked; no file is read here (run/files.py does)."""
        entries = self._attachments.get(step.id)
        if not entries:
            return ()
        scoped = self._scoped(step.id, context)
        return parse_attachments((_run(compiled, scoped), kind, compiled.template.label) for compiled, kind in entries)

    def text(self, step: StepBase, field: str, context: Mapping[str, Any]) -> str:
        """The template a step of another kind holds at `field`, rendered as text in the step's scope."""
        return _text(self._templates[step.id, field], self._scoped(step.id, context))

    def value(self, step: StepBase, field: str, context: Mapping[str, Any]) -> Any:
        """The template a step of another kind holds at `field`, evaluated: a lone `{{ expression }}` keeps its type."""
        return _run(self._templates[step.id, field], self._scoped(step.id, context))

    def should_run(self, step: StepBase, context: Mapping[str, Any]) -> bool:
        compiled = self._whens.get(step.id)
        if compiled is None:
            return True
        value = _run(compiled, self._scoped(step.id, context))
        if isinstance(value, str):
            return value.strip().lower() not in _FALSE_WORDS
        return bool(value)

    def items(self, step: StepBase, context: Mapping[str, Any]) -> Any:
        """The value of a map step's `for_each` (natively: a list when the expression gives one)."""
        return _run(self._lists[step.id], self._scoped(step.id, context))

    def output(self, context: Mapping[str, Any]) -> Any:
        return self._output(context)

    def _scoped(self, step_id: str, context: Mapping[str, Any]) -> dict[str, Any]:
        """A step sees the input and its own ancestors only (and, in a map step, its element)."""
        ancestors = self._graph.ancestors[step_id]
        steps = context.get("steps", {})
        scoped = {"input": context["input"], "steps": {key: steps[key] for key in ancestors if key in steps}}
        for name in self._element_names.get(step_id, ()):
            if name in context:
                scoped[name] = context[name]
        return scoped


def _system_parts(text: str, prefix: StablePrefix) -> tuple[TextPart, ...]:
    """The system text as its stable prefix and the per-record rest, so that a cache breakpoint can close the
    prefix; all of it marked as varying when it does not start with the prefix (a breakpoint would only write)."""
    if prefix.whole:
        return (TextPart(text),)
    if not prefix.text or not text.startswith(prefix.text) or len(text) == len(prefix.text):
        return (TextPart(text, varies=True),)
    return (TextPart(prefix.text), TextPart(text[len(prefix.text) :], varies=True))


def _text(compiled: Compiled, context: Mapping[str, Any]) -> str:
    value = _run(compiled, context)
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value)


def _run(compiled: Compiled, context: Mapping[str, Any]) -> Any:
    """Evaluate one template; every failure of a user's template becomes a RenderError for its record."""
    try:
        value = compiled.evaluate(context)
        _refuse_undefined(value)
    except Exception as exc:  # anything a template raises fails only its record
        raise _render_error(compiled.template, exc) from None
    return value


def _render_error(template: Template, exc: Exception) -> RenderError:
    if isinstance(exc, jinja2.UndefinedError):
        problem = exc.message or "undefined value"
    elif isinstance(exc, jinja2.TemplateError):
        problem = str(exc)
    else:
        problem = f"{type(exc).__name__}: {_PYTHON_TYPE.sub(lambda match: _JSON_NAMES[match.group(1)], str(exc))}"
    line = template.line + _line_in_template(exc) - 1
    return RenderError(f"{template.path}:{line}: {template.label}: {problem}", step=template.step)


def _line_in_template(exc: BaseException) -> int:
    """The template line that failed: Jinja rewrites tracebacks so template frames carry template lines."""
    line = 1
    frame = exc.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_filename == "<template>":
            # A lone expression's frames are Jinja's generated code, not rewritten to template lines: map them.
            compiled = frame.tb_frame.f_globals.get("__jinja_template__")
            line = compiled.get_corresponding_lineno(frame.tb_lineno) if compiled is not None else frame.tb_lineno
        frame = frame.tb_next
    return line


def _refuse_undefined(value: Any) -> None:
    """A lone `{{ expression }}` evaluates natively and may hand back an Undefined instead of raising:
    raise its error now, so it fails this record rather than whoever serialises the value later."""
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    elif isinstance(value, dict):
        for item in value.values():
            _refuse_undefined(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_undefined(item)


def _compile_output(environment: SandboxedEnvironment, value: Any, templates) -> Callable[[Mapping[str, Any]], Any]:
    """Mirror the `output` structure: strings become templates, the rest stays as written.

    `templates` yields the output's Template objects in the same walk order as graph.output_templates.
    """
    if isinstance(value, str):
        compiled = _compile(environment, next(templates))
        return lambda context: _run(compiled, context)
    if isinstance(value, Mapping):
        parts = {key: _compile_output(environment, item, templates) for key, item in value.items()}
        return lambda context: {key: part(context) for key, part in parts.items()}
    if isinstance(value, list | tuple):
        items = [_compile_output(environment, item, templates) for item in value]
        return lambda context: [item(context) for item in items]
    constant = thaw(value)
    return lambda context: constant
