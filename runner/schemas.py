"""JSON Schema rules for structured outputs, shared by the loader and the reply validator."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
_SUBSCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")
_SUBSCHEMA_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains")


def strict_mode_problems(schema: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Where a schema breaks strict mode, as (JSON pointer, the exact fix)."""
    return list(_walk(schema, ""))


def _walk(schema: Any, pointer: str) -> Iterator[tuple[str, str]]:
    if not isinstance(schema, Mapping):
        return
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
