"""The code step as the file writes it: `call: module:function`, keyword `args` (Jinja strings; a lone
`{{ expression }}` keeps its type), an optional output `schema` and `timeout_s`; built into a frozen
CodeStep. Loading never imports the module: finding it and reading it are plan.pyfuncs' job."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import SpecError, SpecErrors
from .kinds import StepInput, StepKind, inline_template, inside
from .model import FrozenDict, StepBase, Template, freeze
from .strict import metaschema_problems

DEFAULT_TIMEOUT_S = 120.0  # when neither the step nor `defaults` sets `timeout_s`
_CALL = re.compile(r"^(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):(?P<function>[A-Za-z_]\w*)$")


@dataclass(frozen=True, kw_only=True)
class CodeStep(StepBase):
    """A Python function called with the rendered `args` as keyword arguments (the `call` kind)."""

    kind: ClassVar[str] = "code"
    call: str  # module:function, as written
    args: FrozenDict  # as written; every string in it is a template (see `arg_templates`)
    schema: FrozenDict | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    arg_templates: tuple[Template, ...] = ()  # one per string in `args`, its field named by `arg_field`

    @property
    def module_name(self) -> str:
        return self.call.partition(":")[0]

    @property
    def function_name(self) -> str:
        return self.call.partition(":")[2]

    @property
    def output_schema(self) -> FrozenDict | None:
        return self.schema

    def templates(self) -> tuple[Template, ...]:
        return (*self.arg_templates, *super().templates())


def arg_field(location: tuple) -> str:
    """How a value inside `args` is named in messages and by the renderer: `args.items`, `args.names[0]`."""
    return "args" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in location)


def arg_strings(value: Any, location: tuple = ()) -> Iterator[tuple[tuple, str]]:
    """Every string inside `args` (the templates), with its location below `args`, in one fixed order."""
    if isinstance(value, str):
        yield location, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from arg_strings(item, (*location, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from arg_strings(item, (*location, index))


def build_code_step(step: StepInput) -> CodeStep:
    raw, source, here = step.raw, step.source, step.here
    call = raw["call"]
    if not _CALL.match(call):
        raise source.error(
            f"step '{step.id}': `call` must be module:function (e.g. invoice_tools:sum_amounts), not {call!r}",
            (*here, "call"),
            field="call",
        )
    args = raw.get("args") or {}
    templates = tuple(
        inline_template(text, source, (*here, "args", *location), arg_field(location), step.id)
        for location, text in arg_strings(args)
    )
    timeout = raw.get("timeout_s", step.defaults.get("timeout_s", DEFAULT_TIMEOUT_S))
    return CodeStep(
        **step.base(),
        call=call,
        args=freeze(args),
        schema=freeze(_load_schema(step)),
        timeout_s=float(timeout),
        arg_templates=templates,
    )


CODE = StepKind("code", ("call",), FrozenDict({"$ref": "#/$defs/code_step"}), build_code_step)


def _load_schema(step: StepInput) -> dict | None:
    """The return value's JSON Schema, inline or a file beside the pipeline; any JSON Schema (no strict mode:
    no provider sees it)."""
    raw, source = step.raw.get("schema"), step.source
    if raw is None:
        return None
    location = (*step.here, "schema")
    if not isinstance(raw, str):
        problems = metaschema_problems(raw, location, source, strict=False)
    else:
        path = inside(step.folder, raw, source, location, "schema")
        try:
            raw_schema = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SpecError(
                f"step '{step.id}': schema file is not valid JSON: {exc.msg}",
                path=str(path),
                line=exc.lineno,
                column=exc.colno,
                field="schema",
            ) from None
        if not isinstance(raw_schema, dict):
            raise source.error(f"step '{step.id}': schema file '{raw}' must hold a JSON object", location)
        problems = metaschema_problems(raw_schema, location, source, strict=False, file_label=raw)
        raw = raw_schema
    if problems:
        raise problems[0] if len(problems) == 1 else SpecErrors(problems)
    return raw
