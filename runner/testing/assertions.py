"""Assertions of `pipeline test` cases: checked against one run's output, steps, cost and latency."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator

from ..spec.strict import validation_problem
from ..spec.yamlmarks import SourceMap

VALUE_CHECKS = ("equals", "contains", "regex", "json_schema", "one_of")
KINDS = (*VALUE_CHECKS, "max_cost_usd", "max_latency_ms", "model", "judge")
OPTIONS = ("path", "step", "pass_rate", "judge_model", "name")
MISSING = object()


@dataclass(frozen=True)
class Assertion:
    kind: str
    expected: Any
    path: str  # where the checked value lives: output..., steps.<id>..., input...
    step: str | None
    pass_rate: float | None
    judge_model: str | None
    line: int | None

    def describe(self) -> str:
        if self.kind in ("max_cost_usd", "max_latency_ms"):
            return f"{self.kind} {self.expected}"
        if self.kind == "model":
            return f"step '{self.step}' answered by {self.expected}"
        if self.kind == "judge":
            return f"judge: {self.expected}"
        return f"{self.path} {self.kind} {_short(self.expected)}"


@dataclass(frozen=True)
class Check:
    passed: bool
    actual: Any
    detail: str = ""


def parse_assertion(raw: Any, source: SourceMap, location: tuple) -> Assertion:
    line = source.where(location)[0]
    if not isinstance(raw, Mapping):
        raise source.error("an assertion is a mapping, e.g. {path: output.category, equals: billing}", location)
    kinds = [key for key in raw if key in KINDS]
    unknown = [key for key in raw if key not in KINDS and key not in OPTIONS]
    if unknown:
        raise source.error(
            f"unknown assertion key '{unknown[0]}'; use one of {', '.join(KINDS)} (with {', '.join(OPTIONS)})",
            (*location, unknown[0]),
            key=True,
        )
    if len(kinds) != 1:
        raise source.error(f"an assertion needs exactly one of {', '.join(KINDS)}; found {kinds or 'none'}", location)
    kind = kinds[0]
    path = str(raw.get("path", "output"))
    step = raw.get("step")
    if kind == "model" and step is None:
        match = re.match(r"^steps\.([a-z0-9_]+)", path)
        if not match:
            raise source.error("a `model` assertion names its step: {step: classify, model: ...}", location)
        step = match.group(1)
    if kind == "regex":
        try:
            re.compile(str(raw["regex"]))
        except re.error as exc:
            raise source.error(f"regex {raw['regex']!r} does not compile: {exc}", (*location, "regex")) from None
    if kind == "json_schema":
        try:
            Draft202012Validator.check_schema(raw["json_schema"])
        except Exception as exc:  # jsonschema.SchemaError, with its own message
            raise source.error(f"json_schema is not a valid JSON Schema: {exc}", (*location, "json_schema")) from None
    pass_rate = raw.get("pass_rate")
    if pass_rate is not None and not (isinstance(pass_rate, int | float) and 0 < pass_rate <= 1):
        raise source.error("pass_rate is a fraction above 0 and at most 1, e.g. 0.8", (*location, "pass_rate"))
    return Assertion(kind, raw[kind], path, step, pass_rate, raw.get("judge_model"), line)


def resolve(view: Mapping[str, Any], path: str) -> Any:
    value: Any = view
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            return MISSING
    return value


def check(assertion: Assertion, view: Mapping[str, Any]) -> Check:
    """Every kind but `judge`, which needs a model call (see cases.py)."""
    kind, expected = assertion.kind, assertion.expected
    if kind == "max_cost_usd":
        return Check(view["cost_usd"] <= expected, view["cost_usd"])
    if kind == "max_latency_ms":
        return Check(view["latency_ms"] <= expected, view["latency_ms"])
    if kind == "model":
        step = view["steps"].get(assertion.step)
        actual = step.get("model") if step else MISSING
        return Check(actual == expected, actual, "" if step else f"step '{assertion.step}' did not run")
    actual = resolve(view, assertion.path)
    if actual is MISSING:
        return Check(False, None, f"nothing at {assertion.path}")
    if kind == "equals":
        return Check(actual == expected, actual)
    if kind == "one_of":
        return Check(actual in expected, actual)
    if kind == "contains":
        if isinstance(actual, str):
            return Check(str(expected) in actual, actual)
        if isinstance(actual, list | tuple):
            return Check(expected in actual, actual)
        if isinstance(actual, Mapping):
            return Check(expected in actual, actual)
        return Check(False, actual, "contains needs text, a list or a mapping")
    if kind == "regex":
        text = actual if isinstance(actual, str) else json.dumps(actual, ensure_ascii=False)
        return Check(re.search(str(expected), text) is not None, actual)
    if kind == "json_schema":
        errors = list(Draft202012Validator(expected).iter_errors(actual))
        return Check(not errors, actual, "; ".join(validation_problem(error) for error in errors[:3]))
    # parse_assertion admits only KINDS, and cases.py checks `judge` itself: reaching here is a bug, not a bad file
    raise ValueError(f"check() has no rule for assertion kind {kind!r}")


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
