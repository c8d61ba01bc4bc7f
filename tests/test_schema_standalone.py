"""The shipped file schema is self-contained: a standard JSON Schema tool (an editor's YAML language server,
`jsonschema` with no registry) resolves every `$ref` in it and accepts every example pipeline."""

from __future__ import annotations

import json

import pytest
import yaml
from jsonschema import Draft202012Validator

from runner.spec.load import SCHEMA_PATH

from .conftest import EXAMPLES, ROOT

PIPELINES = sorted(
    path
    for path in [*EXAMPLES.glob("*.yaml"), *(ROOT / "bench" / "pipelines").glob("*.yaml")]
    if not path.name.endswith(".cases.yaml")
)


def _refs(node):
    if isinstance(node, dict):
        yield from ([node["$ref"]] if isinstance(node.get("$ref"), str) else [])
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_every_ref_points_inside_the_schema():
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    outside = sorted({ref for ref in _refs(schema) if not ref.startswith("#/")})
    assert outside == []


@pytest.mark.parametrize("path", PIPELINES, ids=lambda path: path.name)
def test_a_plain_validator_accepts_every_example(path):
    validator = Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))  # no registry
    validator.validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def test_a_plain_validator_checks_the_openrouter_settings_too():
    validator = Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    good = {"name": "p", "steps": {"a": {"prompt": "hi", "provider": {"sort": "price"}, "top_k": 4}}}
    assert list(validator.iter_errors(good)) == []
    typo = {"name": "p", "steps": {"a": {"prompt": "hi", "provider": {"sortt": "price"}}}}
    assert any("sortt" in error.message for error in validator.iter_errors(typo))
    plugin = {"name": "p", "steps": {"a": {"prompt": "hi", "plugins": [{"id": "web", "max_resultz": 3}]}}}
    assert any("max_resultz" in error.message for error in validator.iter_errors(plugin))
