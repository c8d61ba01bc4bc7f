"""JSON Schema rules for structured outputs, shared by the loader and the reply validator.

Strict mode (OpenAI's rules, which OpenRouter passes on) takes a subset of JSON Schema: the root is
one object; every object lists all its properties in `required` and sets `additionalProperties:
false`; `anyOf` is the only composition it supports, and not at the root.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import jsonschema
from jsonschema import Draft202012Validator

if TYPE_CHECKING:
    from ..errors import SpecError
    from .yamlmarks import SourceMap

_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
_SUBSCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")
_SUBSCHEMA_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains")

_ROOT_WRAP = (
    "wrap it in an object, e.g. type: object, additionalProperties: false, required: [result], "
    "properties: {result: <this schema>}, then read the step's `output.result`"
)
# Keywords strict mode refuses wherever they appear, each with the fix.
_REFUSED = {
    "oneOf": "strict mode does not support `oneOf`; write `anyOf` with the same branches",
    "allOf": "strict mode does not support `allOf`; merge the branches into one schema "
    "(their `properties` and `required` together)",
    "not": "strict mode does not support `not`; describe the allowed values instead (`enum` or `anyOf`)",
    "if": "strict mode does not support `if`/`then`/`else`; write `anyOf` with one branch per case",
    "dependentRequired": "strict mode does not support `dependentRequired`; list every property in `required` "
    "and make the optional ones nullable (type: [string, 'null'])",
    "dependentSchemas": "strict mode does not support `dependentSchemas`; write `anyOf` with one branch per case",
}


def json_type(value: Any) -> str:
    """A value's JSON type name, as messages should say it (`null`, not NoneType; `object`, not dict)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def validation_problem(error: jsonschema.ValidationError) -> str:
    """jsonschema's message, but a `type` error in JSON words (jsonschema says "None is not of type 'string'")."""
    return type_mismatch(error.validator_value, error.instance) if error.validator == "type" else error.message


def type_mismatch(expected: str | list[str], value: Any) -> str:
    """Say what was wanted and what came, e.g. "must be a string, not null"."""
    names = [expected] if isinstance(expected, str) else list(expected)
    wanted = " or ".join(name if name == "null" else ("an " if name[0] in "aeiou" else "a ") + name for name in names)
    shown = json_type(value)
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = json.dumps(value, ensure_ascii=False)
        shown += f" {text if len(text) <= 40 else text[:37] + '...'}"
    return f"must be {wanted}, not {shown}"


def strict_mode_problems(schema: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Where a schema breaks strict mode, as (JSON pointer, the exact fix)."""
    return [*_root(schema), *_walk(schema, "")]


def _root(schema: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    if "anyOf" in schema:
        yield "/anyOf", f"the root must be one object, not `anyOf`; {_ROOT_WRAP}"
    elif schema.get("type") != "object":
        written = schema.get("type")
        what = f"type {json.dumps(written)}" if written is not None else "no `type: object`"
        yield "/", f"the root must be an object (it has {what}); {_ROOT_WRAP}"


def _walk(schema: Any, pointer: str) -> Iterator[tuple[str, str]]:
    if not isinstance(schema, Mapping):
        return
    for keyword, fix in _REFUSED.items():
        if keyword in schema:
            yield f"{pointer}/{keyword}", fix
    types = schema.get("type")
    is_object = types == "object" or (isinstance(types, list | tuple) and "object" in types) or "properties" in schema
    if is_object:
        if schema.get("additionalProperties") is not False:
            yield pointer or "/", "add `additionalProperties: false` to this object"
        properties = list(schema.get("properties", {}))
        required = set(schema.get("required", ()))
        missing = [name for name in properties if name not in required]
        if missing:
            yield (
                pointer or "/",
                f"every property must be listed in `required`; add {', '.join(missing)} to `required` "
                "(make a property optional with a null type instead, e.g. type: [string, 'null'])",
            )
    for key in _SUBSCHEMA_MAPS:
        for name, child in (schema.get(key) or {}).items():
            yield from _walk(child, f"{pointer}/{key}/{name}")
    for key in _SUBSCHEMA_LISTS:
        for index, child in enumerate(schema.get(key) or ()):
            yield from _walk(child, f"{pointer}/{key}/{index}")
    for key in _SUBSCHEMA_ONE:
        if isinstance(schema.get(key), Mapping):
            yield from _walk(schema[key], f"{pointer}/{key}")


def metaschema_problems(
    schema: dict, location: tuple, source: SourceMap, *, strict: bool, file_label: str | None = None
) -> list[SpecError]:
    """A schema written in the pipeline file (the input's, or a step's) checked as JSON Schema, and for a
    step's also against strict mode; each problem names where it is written."""
    owner = f"step '{location[1]}' schema" if location[0] == "steps" else "input schema"
    if file_label:
        owner += f" ({file_label})"
    try:
        Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        pointer = "/" + "/".join(str(part) for part in exc.absolute_path)
        inner = location if file_label else (*location, *exc.absolute_path)
        return [source.error(f"{owner} is not a valid JSON Schema at {pointer}: {exc.message}", inner)]
    if not strict:
        return []
    return [
        source.error(
            f"{owner} is not accepted by structured outputs' strict mode at {pointer}: {message}",
            location if file_label else (*location, *pointer_parts(pointer)),
            key=True,
        )
        for pointer, message in strict_mode_problems(schema)
    ]


def pointer_parts(pointer: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in pointer.strip("/").split("/") if part)
