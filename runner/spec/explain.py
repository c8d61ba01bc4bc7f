"""Schema errors in the pipeline file, told as a user would want them: the field as written, the fix."""

from __future__ import annotations

import difflib

import jsonschema

from ..errors import SpecError
from .strict import type_mismatch
from .yamlmarks import SourceMap


def explain(error: jsonschema.ValidationError, source: SourceMap) -> list[SpecError]:
    """Turn a schema error into a message that names the field as written and says how to fix it."""
    location = tuple(error.absolute_path)
    where = _describe(location)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        found = []
        for key in error.instance:
            if key in allowed:
                continue
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            fix = f"did you mean '{hint[0]}'?" if hint else f"allowed keys: {', '.join(allowed)}"
            found.append(
                source.error(f"unknown key '{key}' {where}; {fix}", (*location, key), key=True, field=str(key))
            )
        return found
    if error.validator == "anyOf" and error.context:
        # A branch of the value's own type says what is wrong with it (`stop` as a list of five: too long).
        fitting = [inner for inner in error.context if inner.validator != "type"] or error.context
        best = jsonschema.exceptions.best_match(fitting)
        return explain(best, source) if best is not error else []
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return [source.error(f"missing required key '{missing}' {where}", location, key=True, field=missing)]
    if error.validator == "enum":
        choices = ", ".join(repr(choice) for choice in error.validator_value)
        return [source.error(f"{_field(location)} must be one of {choices}, not {error.instance!r}", location)]
    if error.validator == "type":
        return [source.error(f"{_field(location)} {type_mismatch(error.validator_value, error.instance)}", location)]
    if error.validator == "not" and location and location[-1] == "reasoning":
        return [source.error("reasoning takes `effort` or `max_tokens`, not both", location, field="reasoning")]
    if error.validator == "pattern" and location and (location[-1] == "model" or "fallback_models" in location):
        return [
            source.error(
                f"{_field(location)} {error.instance!r} is not an OpenRouter model id (expected provider/model, "
                "e.g. google/gemini-2.5-flash)",
                location,
            )
        ]
    if error.validator == "pattern" and "propertyNames" in error.schema_path:
        return [
            source.error(
                f"step id '{error.instance}' may use only a-z, 0-9 and _", (*location, error.instance), key=True
            )
        ]
    if error.validator == "pattern" and location == ("name",):
        return [source.error(f"name {error.instance!r} may use only a-z, 0-9, '-' and '_'", location)]
    return [source.error(f"{_field(location)}: {error.message}", location, field=_field(location))]


def _describe(location: tuple) -> str:
    if not location:
        return "at the top level"
    if location[0] == "steps" and len(location) >= 2:
        rest = ".".join(str(part) for part in location[2:])
        return f"in step '{location[1]}'" + (f" ({rest})" if rest else "")
    return "in " + ".".join(str(part) for part in location)


def _field(location: tuple) -> str:
    if location and location[0] == "steps" and len(location) >= 3:
        return f"step '{location[1]}': " + ".".join(str(part) for part in location[2:])
    return ".".join(str(part) for part in location) or "the file"
