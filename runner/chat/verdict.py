"""Checking a model's reply: JSON (a ```json fence is tolerated) that matches the step's schema."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator

from ..outcomes import Outcome
from ..spec.strict import validation_problem

_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(?P<body>.*?)\n?\s*```\s*$", re.DOTALL)
MAX_REPORTED_PROBLEMS = 5


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome  # OK, INVALID_JSON or SCHEMA_MISMATCH (the cost record's outcome)
    value: Any = None
    problems: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == Outcome.OK


def compile_validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def strip_fence(text: str) -> str:
    match = _FENCE.match(text)
    return match.group("body") if match else text


def check_reply(text: str | None, validator: Draft202012Validator | None) -> Verdict:
    """Text steps accept any non-empty text; schema steps need JSON that the schema accepts."""
    if validator is None:
        if text is None or not text.strip():
            return Verdict(Outcome.INVALID_JSON, problems="the reply was empty")
        return Verdict(Outcome.OK, value=text)
    if text is None or not text.strip():
        return Verdict(Outcome.INVALID_JSON, problems="the reply was empty; a JSON value was expected")
    try:
        value = json.loads(strip_fence(text))
    except json.JSONDecodeError as exc:
        return Verdict(
            Outcome.INVALID_JSON,
            problems=f"the reply is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})",
        )
    errors = sorted(validator.iter_errors(value), key=lambda error: list(error.absolute_path))
    if errors:
        lines = [
            f"at {_pointer(error.absolute_path)}: {validation_problem(error)}"
            for error in errors[:MAX_REPORTED_PROBLEMS]
        ]
        if len(errors) > MAX_REPORTED_PROBLEMS:
            lines.append(f"... and {len(errors) - MAX_REPORTED_PROBLEMS} more")
        return Verdict(
            Outcome.SCHEMA_MISMATCH, value=value, problems="the JSON does not match the schema:\n" + "\n".join(lines)
        )
    return Verdict(Outcome.OK, value=value)


def _pointer(path) -> str:
    return "/" + "/".join(str(part) for part in path) if path else "the top level"
