"""Values that satisfy a JSON Schema, chosen deterministically from a seed: the fake's replies."""

from __future__ import annotations

import hashlib
import re
from typing import Any


def synthesize(schema: Any, seed: bytes, prompt_text: str = "", name: str = "value") -> Any:
    """A value valid against `schema`, chosen deterministically from `seed` (the prompt's hash)."""
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][seed[0] % len(schema["enum"])]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            options = [option for option in schema[key] if option.get("type") != "null"] or schema[key]
            return synthesize(options[0], seed, prompt_text, name)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(part)
        return synthesize(merged, seed, prompt_text, name)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((item for item in kind if item != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        properties = schema.get("properties") or {}
        return {key: synthesize(sub, _reseed(seed, key), prompt_text, key) for key, sub in properties.items()}
    if kind == "array":
        count = max(schema.get("minItems", 1), 1)
        count = min(count, schema.get("maxItems", count))
        return [
            synthesize(schema.get("items") or {}, _reseed(seed, str(index)), prompt_text, name)
            for index in range(count)
        ]
    if kind == "integer":
        return _number(schema, seed, integer=True)
    if kind == "number":
        return _number(schema, seed, integer=False)
    if kind == "boolean":
        return bool(seed[1] % 2)
    if kind == "null":
        return None
    return _string(schema, seed, prompt_text, name)


def _reseed(seed: bytes, salt: str) -> bytes:
    return hashlib.sha256(seed + salt.encode("utf-8")).digest()


def _number(schema: dict[str, Any], seed: bytes, *, integer: bool) -> float | int:
    low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
    high = schema.get("maximum", schema.get("exclusiveMaximum", low + 100))
    if "exclusiveMinimum" in schema and "minimum" not in schema:
        low = low + (1 if integer else 0.01)
    if "exclusiveMaximum" in schema and "maximum" not in schema:
        high = high - (1 if integer else 0.01)
    span = max(high - low, 0)
    fraction = seed[2] / 255
    value = low + span * fraction
    return round(value) if integer else round(value, 2)


_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{3,}")
_FORMATS = {
    "email": "someone@example.com",
    "date": "2026-01-15",
    "date-time": "2026-01-15T10:00:00Z",
    "uri": "https://example.com/item",
    "uuid": "3f2b8c4e-1d2a-4b7c-9e8f-0a1b2c3d4e5f",
}


def _string(schema: dict[str, Any], seed: bytes, prompt_text: str, name: str) -> str:
    if schema.get("format") in _FORMATS:
        return _FORMATS[schema["format"]]
    words = _WORD.findall(prompt_text)[-60:]
    picked = [words[byte % len(words)] for byte in seed[3:8]] if words else ["sample", "text"]
    text = " ".join(picked).capitalize()
    minimum, maximum = schema.get("minLength", 0), schema.get("maxLength")
    if len(text) < minimum:
        text = text + "." * (minimum - len(text))
    if maximum is not None:
        text = text[:maximum]
    return text
