"""The code step as the file writes it: `call: module:function`, keyword `args` (Jinja strings; a lone
`{{ expression }}` keeps its type), an optional output `schema` and `timeout_s`; built into a frozen
CodeStep. Loading never imports the module: finding it, reading it and importing it for a run are
spec.pymodules' job."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .kinds import StepInput, StepKind, inline_template
from .model import FrozenDict, StepBase, Template, freeze
from .pymodules import REF
from .stepschema import load_step_schema

DEFAULT_TIMEOUT_S = 120.0  # when neither the step nor `defaults` sets `timeout_s`


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
    if not REF.match(call):
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
        schema=freeze(load_step_schema(step, strict=False)),
        timeout_s=float(timeout),
        arg_templates=templates,
    )


CODE = StepKind("code", ("call",), FrozenDict({"$ref": "#/$defs/code_step"}), build_code_step)
