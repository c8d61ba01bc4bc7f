"""Operations on JSON Schema fragments that value synthesis needs: one schema from two (the tighter
bound wins), the kind of value a schema describes, the order of alternatives, numeric bounds.
"""

import json
import math
from typing import Any

BOUNDS_LOW = ("minLength", "minItems", "minProperties", "minimum", "exclusiveMinimum", "minContains")
BOUNDS_HIGH = ("maxLength", "maxItems", "maxProperties", "maximum", "exclusiveMaximum", "maxContains")


def kind_of(schema: dict, deep: bool) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        options = [item for item in kind if item != "null"]
        if not options or (deep and "null" in kind):
            return "null"
        return options[0]
    if isinstance(kind, str):
        return kind
    keys = set(schema)
    if keys & {"properties", "required", "additionalProperties", "patternProperties", "minProperties"}:
        return "object"
    if keys & {"items", "prefixItems", "minItems", "maxItems", "contains", "uniqueItems"}:
        return "array"
    if keys & {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}:
        return "number"
    return "string"


def rank(option: Any, deep: bool) -> int:
    """Options tried first: non-null ones, unless the value is already deep (then null and leaves)."""
    if not isinstance(option, dict):
        return 1
    is_null = option.get("type") == "null" or option.get("const", 0) is None
    if deep:
        return 0 if is_null else (2 if "$ref" in json.dumps(option) else 1)
    return 1 if is_null else 0


def merge(base: Any, extra: Any) -> dict:
    """Both schemas' constraints in one schema (allOf, $ref siblings); the tighter bound wins."""
    base = base if isinstance(base, dict) else {}
    extra = extra if isinstance(extra, dict) else {}
    merged = dict(base)
    for key, value in extra.items():
        if key not in merged:
            merged[key] = value
        elif key == "properties":
            properties = dict(merged[key])
            for name, sub in value.items():
                properties[name] = {"allOf": [properties[name], sub]} if name in properties else sub
            merged[key] = properties
        elif key == "required":
            merged[key] = list(dict.fromkeys([*merged[key], *value]))
        elif key in BOUNDS_LOW:
            merged[key] = max(merged[key], value)
        elif key in BOUNDS_HIGH:
            merged[key] = min(merged[key], value)
        elif key == "enum":
            merged[key] = [item for item in merged[key] if item in value]
        elif key == "type":
            mine = merged[key] if isinstance(merged[key], list) else [merged[key]]
            theirs = value if isinstance(value, list) else [value]
            common = [item for item in mine if item in theirs or (item == "integer" and "number" in theirs)]
            common += [item for item in theirs if item == "integer" and "number" in mine and item not in common]
            merged[key] = common
        elif key in ("anyOf", "oneOf", "allOf"):
            merged["allOf"] = [*merged.get("allOf", ()), {key: value}]
        else:
            merged[key] = value
    return merged


def first_bound(schema: dict, inclusive: str, exclusive: str) -> float | None:
    values = [schema[key] for key in (inclusive, exclusive) if isinstance(schema.get(key), int | float)]
    if not values:
        return None
    return max(values) if inclusive == "minimum" else min(values)


def tidy(value: float, step: float) -> float:
    """k * 0.01 as 0.07, not 0.07000000000000001: as many decimals as the step has."""
    decimals = max(0, -math.floor(math.log10(abs(step)))) + 2 if step < 1 else 0
    rounded = round(value, decimals)
    return int(rounded) if float(rounded).is_integer() else rounded
