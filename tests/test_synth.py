"""The fake's values (`--mock` replies, dry-run stand-ins) validate against the schema they were made for."""

from __future__ import annotations

import copy
import datetime
import ipaddress
import json
import re
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from runner.chat.catalog import bundled_catalog
from runner.chat.messages import Message
from runner.errors import SynthesisError
from runner.plan.synth import Synthesizer, synthesize
from runner.run.dryrun import estimate
from runner.run.inputs import InputItem
from runner.spec import load_spec

from .conftest import EXAMPLES, FIXTURES, ROOT, cost_rows, invoke, write_pipeline

NODE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "children"],
    "properties": {"name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
}
HARD = {
    "pattern: code": {"type": "string", "pattern": r"^[A-Z]{3}-\d{4}$"},
    "pattern: alternation, optional, escapes": {"type": "string", "pattern": r"^(foo|bar)_[a-z]+\.(json|ya?ml)$"},
    "pattern: unanchored with length": {"type": "string", "pattern": r"\d{2}", "minLength": 5, "maxLength": 8},
    "pattern: negated class and backreference": {"type": "string", "pattern": r"^([^\s,]{2})-\1$"},
    "pattern: lookbehind": {"type": "string", "pattern": r"(?<=EUR )\d+"},
    "pattern: sku list": {
        "type": "array",
        "minItems": 2,
        "uniqueItems": True,
        "items": {"type": "string", "pattern": r"^SKU-[0-9A-F]{6}$"},
    },
    "recursive $ref tree": {"$defs": {"node": NODE}, "$ref": "#/$defs/node"},
    "recursive linked list through anyOf null": {
        "$defs": {
            "item": {
                "type": "object",
                "required": ["value", "next"],
                "properties": {
                    "value": {"type": "integer"},
                    "next": {"anyOf": [{"$ref": "#/$defs/item"}, {"type": "null"}]},
                },
            }
        },
        "$ref": "#/$defs/item",
    },
    "$ref with siblings and $defs chain": {
        "$defs": {"amount": {"$ref": "#/$defs/money"}, "money": {"type": "number", "minimum": 1}},
        "type": "object",
        "required": ["total"],
        "properties": {"total": {"$ref": "#/$defs/amount", "maximum": 2}},
    },
    "uniqueItems of enums": {
        "type": "array",
        "uniqueItems": True,
        "minItems": 3,
        "items": {"enum": ["red", "green", "blue"]},
    },
    "multipleOf 0.01": {"type": "number", "multipleOf": 0.01, "minimum": 0, "maximum": 10},
    "multipleOf 0.1 exclusive": {"type": "number", "multipleOf": 0.1, "exclusiveMinimum": 0, "exclusiveMaximum": 0.5},
    "integer multipleOf 7": {"type": "integer", "multipleOf": 7, "minimum": 10},
    "formats": {
        "type": "object",
        "required": ["date", "date-time", "email", "uri", "uuid"],
        "properties": {
            name: {"type": "string", "format": name}
            for name in ("date", "date-time", "time", "email", "uri", "uuid", "ipv4", "ipv6", "hostname", "duration")
        },
    },
    "uniqueItems of uuids": {
        "type": "array",
        "uniqueItems": True,
        "minItems": 5,
        "items": {"type": "string", "format": "uuid"},
    },
    "oneOf overlapping integers": {
        "oneOf": [{"type": "integer", "multipleOf": 3}, {"type": "integer", "multipleOf": 5}]
    },
    "allOf": {
        "allOf": [
            {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}},
            {"required": ["b"], "properties": {"b": {"type": "boolean"}}},
        ]
    },
    "nullable strict object": {
        "type": "object",
        "additionalProperties": False,
        "required": ["note", "tags"],
        "properties": {
            "note": {"type": ["string", "null"]},
            "tags": {"type": "array", "items": {"const": "x"}, "maxItems": 1},
        },
    },
    "prefixItems and contains": {
        "type": "array",
        "prefixItems": [{"type": "integer"}, {"type": "string", "format": "email"}],
        "contains": {"type": "string", "pattern": "^ok$"},
        "minItems": 3,
    },
    "minProperties with patternProperties": {
        "type": "object",
        "minProperties": 2,
        "patternProperties": {"^x-[a-z]+$": {"type": "integer"}},
        "additionalProperties": False,
    },
    "if then else": {
        "type": "object",
        "required": ["kind"],
        "properties": {"kind": {"enum": ["a", "b"]}},
        "if": {"properties": {"kind": {"const": "a"}}},
        "then": {"required": ["size"], "properties": {"size": {"type": "integer", "minimum": 3}}},
    },
}


def _schema_files() -> dict[str, dict]:
    """Every step, input and tool schema in the repository's pipelines, schema files and fixtures."""
    found: dict[str, dict] = {}
    for path in sorted(ROOT.glob("pipelines/schemas/*.json")):
        found[str(path.relative_to(ROOT))] = json.loads(path.read_text())
    yamls = [*EXAMPLES.glob("*.yaml"), *FIXTURES.glob("**/*.yaml"), *ROOT.glob("bench/pipelines/*.yaml")]
    for path in sorted(yamls):
        try:
            document = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue
        for pointer, schema in _schemas_in(document, path.parent, ""):
            found[f"{path.relative_to(ROOT)}#{pointer}"] = schema
    return {
        name: schema
        for name, schema in found.items()
        if Draft202012Validator(Draft202012Validator.META_SCHEMA).is_valid(schema)
    }


def _schemas_in(node, folder: Path, pointer: str):
    if isinstance(node, dict):
        for key, value in node.items():
            is_schema = key in ("schema", "parameters") or (key == "input" and pointer == "")  # a pipeline's input
            if is_schema and isinstance(value, dict):
                yield f"{pointer}/{key}", value
            elif key == "schema" and isinstance(value, str) and (folder / value).is_file():
                yield f"{pointer}/{key}", json.loads((folder / value).read_text())
            else:
                yield from _schemas_in(value, folder, f"{pointer}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _schemas_in(value, folder, f"{pointer}/{index}")


REPOSITORY = _schema_files()
ALL = {
    **{f"repo: {name}": schema for name, schema in REPOSITORY.items()},
    **{f"hard: {name}": schema for name, schema in HARD.items()},
}

STRICT_FORMATS = copy.deepcopy(Draft202012Validator.FORMAT_CHECKER)  # the runner's checks, plus:


@STRICT_FORMATS.checks("date-time")
def _date_time(value) -> bool:
    return (
        not isinstance(value, str) or datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None
    )


@STRICT_FORMATS.checks("time")
def _time(value) -> bool:
    return not isinstance(value, str) or datetime.time.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None


@STRICT_FORMATS.checks("uri")
def _uri(value) -> bool:
    return not isinstance(value, str) or bool(urlsplit(value).scheme and urlsplit(value).netloc)


@STRICT_FORMATS.checks("hostname")
def _hostname(value) -> bool:
    return not isinstance(value, str) or re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", value) is not None


@STRICT_FORMATS.checks("duration")
def _duration(value) -> bool:
    return not isinstance(value, str) or re.fullmatch(r"P\d+D", value) is not None


def assert_valid(schema: dict, value) -> None:
    """The runner's own validator (compile_validator's settings) plus stdlib checks of formats it skips."""
    errors = list(Draft202012Validator(schema, format_checker=STRICT_FORMATS).iter_errors(value))
    assert not errors, f"{json.dumps(value)} breaks the schema: {[error.message for error in errors]}"
    for checked in _formatted_strings(schema, value):
        kind, text = checked
        if kind == "uuid":
            uuid.UUID(text)
        elif kind in ("ipv4", "ipv6"):
            ipaddress.ip_address(text)
        elif kind == "date":
            datetime.date.fromisoformat(text)


def _formatted_strings(schema, value):
    if isinstance(schema, dict) and isinstance(value, str) and "format" in schema:
        yield schema["format"], value
    if isinstance(schema, dict) and isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name in value:
                yield from _formatted_strings(sub, value[name])
    if isinstance(schema, dict) and isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            yield from _formatted_strings(schema["items"], item)


def test_the_repository_has_schemas_to_check():
    assert len(REPOSITORY) >= 8
    assert any("ticket_label" in name for name in REPOSITORY) and any(".yaml#/steps/" in name for name in REPOSITORY)


@pytest.mark.parametrize("name", sorted(ALL))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.binary(min_size=32, max_size=32), prompt=st.text(max_size=80))
def test_every_value_validates_against_its_schema(name, seed, prompt):
    schema = ALL[name]
    assert_valid(schema, synthesize(schema, seed, prompt))


@pytest.mark.parametrize("name", sorted(HARD))
def test_hard_schemas_are_deterministic_per_seed(name):
    synthesizer = Synthesizer(HARD[name])
    assert synthesizer.value(b"one", "Refund the invoice") == synthesizer.value(b"one", "Refund the invoice")


def test_unique_enums_use_every_value_and_patterns_really_match():
    assert sorted(synthesize(HARD["uniqueItems of enums"], b"x")) == ["blue", "green", "red"]
    assert re.fullmatch(r"[A-Z]{3}-\d{4}", synthesize(HARD["pattern: code"], b"x"))
    cents = synthesize({"type": "number", "multipleOf": 0.01, "minimum": 0.05, "maximum": 0.09}, b"x")
    assert 0.05 <= cents <= 0.09 and len(str(cents)) <= 4


@pytest.mark.parametrize(
    ("schema", "pointer", "words"),
    [
        ({"type": "object", "properties": {"code": {"type": "string", "pattern": "(?=x)y"}}}, "/code", "pattern"),
        ({"type": "object", "properties": {"n": {"type": "integer", "minimum": 5, "maximum": 1}}}, "/n", "no integer"),
        ({"type": "array", "minItems": 3, "uniqueItems": True, "items": {"enum": ["a", "b"]}}, "/", "distinct"),
        ({"$ref": "#/$defs/missing"}, "/", "cannot resolve"),
        (
            {
                "$defs": {"n": {"type": "object", "required": ["n"], "properties": {"n": {"$ref": "#/$defs/n"}}}},
                "$ref": "#/$defs/n",
            },
            "(/n)+",
            "never end",
        ),
    ],
)
def test_an_impossible_schema_is_an_error_naming_where_not_an_invalid_value(schema, pointer, words):
    with pytest.raises(SynthesisError) as raised:
        synthesize(schema, b"seed")
    assert re.fullmatch(pointer, raised.value.pointer) and words in str(raised.value)


HARD_PIPELINE = """
name: hard
input: {type: object, required: [text], properties: {text: {type: string}}}
defaults: {model: google/gemini-2.5-flash-lite, max_tokens: 400}
steps:
  parse:
    prompt: "Parse {{ input.text }}"
    schema:
      type: object
      additionalProperties: false
      required: [order_id, issued, amount, tags, tree]
      properties:
        order_id: {type: string, pattern: "^ORD-[0-9]{5}$"}
        issued: {type: string, format: date}
        amount: {type: number, multipleOf: 0.01, minimum: 0}
        tags: {type: array, uniqueItems: true, minItems: 2, items: {enum: [new, paid, late]}}
        tree: {$ref: "#/$defs/node"}
      $defs:
        node:
          type: object
          additionalProperties: false
          required: [label, children]
          properties:
            label: {type: string}
            children: {type: array, items: {$ref: "#/$defs/node"}}
  echo:
    prompt: "Order {{ steps.parse.output.order_id }} issued {{ steps.parse.output.issued }}"
"""


def test_mock_runs_a_pipeline_with_patterns_refs_unique_items_and_multiples(capsys, monkeypatch, tmp_path, db_path):
    path = write_pipeline(tmp_path, HARD_PIPELINE)
    result = invoke(capsys, monkeypatch, "run", str(path), "--mock", "--input", "text=x")
    assert result.code == 0, result.err
    assert [row["outcome"] for row in cost_rows(db_path)] == ["ok", "ok"]
    assert re.search(r"Order ORD-\d{5} issued \d{4}-\d\d-\d\d", result.out)


def test_dry_run_stand_ins_are_the_same_valid_values(tmp_path):
    spec = load_spec(write_pipeline(tmp_path, HARD_PIPELINE))
    schema = json.loads(json.dumps(spec.steps[0].schema, default=dict))
    seen = []

    class Recorder:
        def messages(self, step, context):
            seen.append(context["steps"]["parse"]["output"])
            return (Message.text_message("user", "x"),)

    result = estimate(
        spec, Recorder(), bundled_catalog(), [InputItem(key=1, record={"text": "x"})], lambda record, key: record
    )
    assert seen and result.stand_in_problems == []
    assert_valid(schema, seen[0])


def test_dry_run_reports_a_schema_no_stand_in_can_be_made_for(capsys, monkeypatch, tmp_path):
    text = HARD_PIPELINE.replace('pattern: "^ORD-[0-9]{5}$"', 'pattern: "(?=Z)ORD"')
    path = write_pipeline(tmp_path, text)
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-test")
    monkeypatch.setenv("OPENROUTER_BASE_URL", "http://127.0.0.1:9/api/v1")
    result = invoke(capsys, monkeypatch, "run", str(path), "--dry-run", "--input", "text=x")
    assert result.code == 0, result.err
    assert "no schema-valid stand-in output for step 'parse'" in result.err and "/order_id" in result.err
