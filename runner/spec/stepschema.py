"""A step's output `schema` as written: inline, or a JSON file inside the pipeline's folder, checked against
the JSON Schema metaschema (strict mode's rules too when a provider will see it: chat steps)."""

from __future__ import annotations

import json

from ..errors import SpecError, SpecErrors
from .kinds import StepInput, inside
from .strict import metaschema_problems


def load_step_schema(step: StepInput, *, strict: bool) -> dict | None:
    """The step's `schema` (None when it has none); every problem a SpecError naming the file, line and field."""
    raw, source = step.raw.get("schema"), step.source
    if raw is None:
        return None
    location = (*step.here, "schema")
    if not isinstance(raw, str):
        problems = metaschema_problems(raw, location, source, strict=strict)
    else:
        path = inside(step.folder, raw, source, location, "schema")
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SpecError(
                f"step '{step.id}': schema file is not valid JSON: {exc.msg}",
                path=str(path),
                line=exc.lineno,
                column=exc.colno,
                field="schema",
            ) from None
        if not isinstance(schema, dict):
            raise source.error(f"step '{step.id}': schema file '{raw}' must hold a JSON object", location)
        problems = metaschema_problems(schema, location, source, strict=strict, file_label=raw)
        raw = schema
    if problems:
        raise problems[0] if len(problems) == 1 else SpecErrors(problems)
    return raw
