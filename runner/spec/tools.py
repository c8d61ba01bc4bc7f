"""A chat step's `tools`, `tool_choice` and `max_tool_rounds` as the file writes them, built into frozen
`Tool` values: each function found by reading its module's source (never imported at load), its
parameters' JSON Schema from the signature, type hints and docstring unless the file gives one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator, SchemaError

from ..errors import SpecError
from .kinds import StepInput
from .model import Tool, freeze
from .pymodules import FunctionSignature, LookupProblem, keyword_names, read_function
from .signature import SUPPORTED, Undescribable, function_schema

CHOICES = ("auto", "required", "none")
DEFAULT_TOOL_CHOICE = "auto"
DEFAULT_MAX_TOOL_ROUNDS = 5
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class ToolSettings:
    tools: tuple[Tool, ...] = ()
    tool_choice: str = DEFAULT_TOOL_CHOICE
    max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS


def build_tool_settings(step: StepInput) -> ToolSettings:
    """The step's tools, checked: each function exists and its parameters can be told as JSON Schema."""
    raw, source, here = step.raw, step.source, step.here
    written = raw.get("tools")
    if written is None:
        for key in ("tool_choice", "max_tool_rounds"):
            if key in raw:
                raise source.error(
                    f"step '{step.id}' sets `{key}` but offers no `tools`; add `tools:` or remove `{key}`",
                    (*here, key),
                    key=True,
                    field=key,
                )
        return ToolSettings()
    tools: list[Tool] = []
    for index, entry in enumerate(written):
        tool = _tool(step, index, entry)
        if any(other.name == tool.name for other in tools):
            raise source.error(
                f"step '{step.id}': two tools are named '{tool.name}'; a model tells tools apart by name",
                (*here, "tools", index),
                field=f"tools[{index}]",
            )
        tools.append(tool)
    names = [tool.name for tool in tools]
    choice = raw.get("tool_choice", DEFAULT_TOOL_CHOICE)
    if choice not in CHOICES and choice not in names:
        raise source.error(
            f"step '{step.id}': tool_choice '{choice}' is neither auto, required, none nor one of its tools "
            f"({', '.join(names)})",
            (*here, "tool_choice"),
            field="tool_choice",
        )
    return ToolSettings(tuple(tools), choice, int(raw.get("max_tool_rounds", DEFAULT_MAX_TOOL_ROUNDS)))


def _tool(step: StepInput, index: int, entry: str | dict[str, Any]) -> Tool:
    source, location, field = step.source, (*step.here, "tools", index), f"tools[{index}]"
    at_call = ("call",) if isinstance(entry, dict) else ()
    entry = {"call": entry} if isinstance(entry, str) else entry
    call = entry["call"]

    def problem(message: str, where: tuple = ()) -> SpecError:
        return source.error(f"step '{step.id}', tool {call}: {message}", (*location, *where), field=field)

    try:
        found = read_function(call, step.folder)
    except LookupProblem as exc:
        raise problem(str(exc), at_call) from None
    except SpecError as exc:  # the module's source does not parse: told at its own file and line
        raise SpecError(f"step '{step.id}', tool {call}: {exc.reason}", path=exc.path, line=exc.line) from None
    description = entry.get("description")
    parameters = entry.get("parameters")
    if parameters is not None:
        _check_parameters(parameters, found, problem)
    elif found.parameters is None:
        raise problem(
            f"'{found.name}' is not defined with `def` in {found.path}, so its parameters cannot be read; "
            "give them as `parameters:` (a JSON Schema object)"
        )
    else:
        try:
            read_description, parameters = function_schema(found)
        except Undescribable as exc:
            raise problem(
                f"{exc} ({found.path}:{exc.line}); name each parameter with a hint JSON Schema can describe "
                f"({SUPPORTED}), or give the tool's parameters as `parameters:` (a JSON Schema object)"
            ) from None
        description = description if description is not None else read_description
    if not _TOOL_NAME.match(found.name):
        raise problem(f"'{found.name}' is not a tool name: at most 64 ASCII letters, digits, '_' and '-'")
    return Tool(
        name=found.name,
        call=call,
        description=description,
        parameters=freeze(parameters),
        folder=str(step.folder),
    )


def _check_parameters(parameters: dict[str, Any], found: FunctionSignature, problem) -> None:
    """A given parameter schema: valid JSON Schema, an object, naming only parameters the function has."""
    try:
        Draft202012Validator.check_schema(parameters)
    except SchemaError as exc:
        pointer = "/" + "/".join(str(part) for part in exc.absolute_path)
        raise problem(f"`parameters` is not a valid JSON Schema at {pointer}: {exc.message}", ("parameters",)) from None
    if parameters.get("type") != "object":
        raise problem("`parameters` must be a JSON Schema with `type: object`", ("parameters",))
    if found.parameters is None or any(parameter.kind == "VAR_KEYWORD" for parameter in found.parameters):
        return
    accepted = set(keyword_names(found.parameters))
    unknown = sorted(set(parameters.get("properties") or {}) - accepted)
    if unknown:
        raise problem(
            f"`parameters` names {', '.join(unknown)}, which {found.name}() does not take "
            f"({found.where}; it takes {', '.join(sorted(accepted)) or 'no arguments'})",
            ("parameters",),
        )
