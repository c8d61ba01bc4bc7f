"""`pipeline validate` rules beyond loading, its output formats, and `pipeline graph`."""

from __future__ import annotations

import json
import re

import pytest

from runner.api import load_pipeline
from runner.chat.catalog import bundled_catalog
from runner.check.rules import lint

from .conftest import EXAMPLE_PIPELINES, EXAMPLES, FIXTURES, invoke, write_pipeline

LINT = sorted((FIXTURES / "lint").glob("*.yaml"))


def _expectations(path):
    text = path.read_text()
    severity = re.search(r"^# expect-severity: (\w+)$", text, re.MULTILINE).group(1)
    line = int(re.search(r"^# expect-line: (\d+)$", text, re.MULTILINE).group(1))
    column = re.search(r"^# expect-column: (\d+)$", text, re.MULTILINE)
    words = [word.strip() for word in re.search(r"^# expect: (.+)$", text, re.MULTILINE).group(1).split("|")]
    return severity, line, int(column.group(1)) if column else None, words


def test_every_rule_has_a_fixture():
    assert len(LINT) >= 8


@pytest.mark.parametrize("path", LINT, ids=[path.stem for path in LINT])
def test_each_rule(path):
    severity, line, column, words = _expectations(path)
    pipeline = load_pipeline(path)
    found = [
        finding
        for finding in lint(pipeline.spec, pipeline.graph, bundled_catalog())
        if finding.severity == severity and words[0] in finding.message
    ]
    assert found, path.name
    for word in words:
        assert word in found[0].message, found[0].message
    assert found[0].line == line and found[0].path == str(path)
    if column is not None:
        assert found[0].column == column


def test_examples_have_no_errors():
    for path in EXAMPLE_PIPELINES:
        pipeline = load_pipeline(path)
        assert [f for f in lint(pipeline.spec, pipeline.graph, bundled_catalog()) if f.severity == "error"] == []


def test_warnings_fail_only_with_strict(capsys, monkeypatch, tmp_path):
    path = write_pipeline(
        tmp_path,
        "name: x\nsteps:\n  a:\n    model: openai/gpt-4o-mini\n    reasoning: {effort: high}\n    prompt: hi\n",
    )
    assert invoke(capsys, monkeypatch, "validate", str(path)).code == 0
    strict = invoke(capsys, monkeypatch, "validate", "--strict", str(path))
    assert strict.code == 2 and "0 error(s), 1 warning(s)" in strict.err


def test_github_annotations(capsys, monkeypatch, tmp_path):
    path = write_pipeline(tmp_path, "name: x\nsteps:\n  a:\n    model: google/gemini-2.5-flsh\n    prompt: hi\n")
    result = invoke(capsys, monkeypatch, "validate", "--format", "github", str(path))
    assert result.code == 2
    [line] = result.out.splitlines()
    assert line.startswith(f"::error file={str(path).replace(':', '%3A')},line=4,col=5::step 'a': unknown model")


def test_json_report(capsys, monkeypatch):
    result = invoke(capsys, monkeypatch, "validate", "--format", "json", str(EXAMPLES))
    document = json.loads(result.out)
    assert result.code == 0 and document["errors"] == 0 and len(document["files"]) == len(EXAMPLE_PIPELINES)


def test_validate_never_touches_the_network(capsys, monkeypatch):
    monkeypatch.setenv("OPENROUTER_BASE_URL", "http://127.0.0.1:9/api/v1")
    assert invoke(capsys, monkeypatch, "validate", str(EXAMPLES)).code == 0


def test_graph_mermaid_and_dot(capsys, monkeypatch):
    mermaid = invoke(capsys, monkeypatch, "graph", str(EXAMPLES / "ticket_triage.yaml"))
    assert mermaid.code == 0
    assert mermaid.out.startswith("flowchart TD\n")
    assert "classify --> reply" in mermaid.out and "extract --> reply" in mermaid.out
    assert "drafting · anthropic/claude-sonnet-4.5 · when" in mermaid.out
    dot = invoke(capsys, monkeypatch, "graph", "--format", "dot", str(EXAMPLES / "invoice_check.yaml"))
    assert 'digraph "invoice-check" {' in dot.out and "extract -> audit;" in dot.out and dot.out.rstrip().endswith("}")


def test_guarded_optional_values_give_no_warning():
    """`| default(...)`, `is defined` and `(x or {})` handle a missing value; only the unguarded uses warn."""
    findings = {}
    for name in ("input_property_optional", "skipped_output_field"):
        pipeline = load_pipeline(FIXTURES / "lint" / f"{name}.yaml")
        findings[name] = [f.line for f in lint(pipeline.spec, pipeline.graph, bundled_catalog())]
    assert findings == {"input_property_optional": [16], "skipped_output_field": [21]}


def test_a_checked_step_output_or_input_field_gives_no_warning(tmp_path):
    path = write_pipeline(
        tmp_path,
        "name: x\ndefaults: {model: google/gemini-2.5-flash}\n"
        "input: {type: object, properties: {note: {type: string}}}\n"
        "steps:\n  a:\n    prompt: '{% if input.note is defined %}{{ input.note }}{% endif %}'\n"
        "  b:\n    when: '{{ steps.a.output != \"\" }}'\n    prompt: hi\n"
        "    schema: {type: object, additionalProperties: false, required: [r], properties: {r: {type: string}}}\n"
        "output: '{% if steps.b.output is none %}-{% else %}{{ steps.b.output.r }}{% endif %}'\n",
    )
    pipeline = load_pipeline(path)
    assert lint(pipeline.spec, pipeline.graph, bundled_catalog()) == []
