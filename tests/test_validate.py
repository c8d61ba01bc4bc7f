"""`pipeline validate` rules beyond loading, its output formats, and `pipeline graph`."""

from __future__ import annotations

import json

import pytest

from runner.api import load_pipeline
from runner.catalog import bundled_catalog
from runner.lint import lint

from .conftest import EXAMPLES, invoke, write_pipeline

SCHEMA = (
    "    schema:\n      type: object\n      additionalProperties: false\n      required: [kind]\n"
    "      properties:\n        kind: {type: string, enum: [spam, ham]}\n"
)


def findings(tmp_path, text):
    pipeline = load_pipeline(write_pipeline(tmp_path, text))
    return lint(pipeline.spec, pipeline.graph, bundled_catalog())


@pytest.mark.parametrize(
    ("name", "text", "severity", "line", "words"),
    [
        (
            "unknown model",
            "name: x\nsteps:\n  a:\n    model: google/gemini-2.5-flsh\n    prompt: hi\n",
            "error",
            4,
            ["unknown model 'google/gemini-2.5-flsh'", "did you mean google/gemini-2.5-flash"],
        ),
        (
            "unknown fallback model",
            "name: x\ndefaults:\n  model: google/gemini-2.5-flash\n  fallback_models: [openai/gpt-9]\nsteps:\n  a:\n    prompt: hi\n",
            "error",
            4,
            ["unknown model 'openai/gpt-9' in `fallback_models`"],
        ),
        (
            "no structured outputs",
            "name: x\nsteps:\n  a:\n    model: meta-llama/llama-3.1-8b-instruct\n    prompt: hi\n" + SCHEMA,
            "warning",
            4,
            ["no strict structured outputs", "JSON mode"],
        ),
        (
            "max_tokens too high",
            "name: x\nsteps:\n  a:\n    model: openai/gpt-4o-mini\n    max_tokens: 50000\n    reasoning: {effort: none}\n    prompt: hi\n",
            "error",
            5,
            ["max_tokens 50000 is above the 16384", "set max_tokens to at most 16384"],
        ),
        (
            "reasoning unsupported",
            "name: x\nsteps:\n  a:\n    model: openai/gpt-4o-mini\n    reasoning: {effort: high}\n    prompt: hi\n",
            "warning",
            5,
            ["does not take reasoning settings"],
        ),
        (
            "when never true",
            "name: x\ndefaults: {model: google/gemini-2.5-flash}\nsteps:\n  a:\n    prompt: hi\n"
            + SCHEMA
            + "  b:\n    when: \"{{ steps.a.output.kind == 'sapm' }}\"\n    prompt: hi\noutput: '{{ steps.b.output }}'\n",
            "error",
            13,
            ["compares steps.a.output.kind to 'sapm'", "never true", "'spam', 'ham'"],
        ),
        (
            "when always true",
            "name: x\ndefaults: {model: google/gemini-2.5-flash}\nsteps:\n  a:\n    prompt: hi\n"
            + SCHEMA
            + "  b:\n    when: \"steps.a.output.kind != 'junk'\"\n    prompt: hi\noutput: '{{ steps.b.output }}'\n",
            "warning",
            13,
            ["always true"],
        ),
        (
            "output reaches nothing",
            "name: x\ndefaults: {model: google/gemini-2.5-flash}\nsteps:\n  a:\n    prompt: hi\n  b:\n    prompt: hi\n"
            "output: '{{ steps.a.output }}'\n",
            "warning",
            6,
            ["step 'b': its output reaches nothing"],
        ),
    ],
    ids=lambda value: value if isinstance(value, str) and " " in value and len(value) < 30 else None,
)
def test_each_rule(tmp_path, name, text, severity, line, words):
    found = [
        finding for finding in findings(tmp_path, text) if finding.severity == severity and words[0] in finding.message
    ]
    assert found, name
    message = found[0].message
    for word in words:
        assert word in message, message
    assert found[0].line == line


def test_examples_have_no_errors():
    for path in ("ticket_triage.yaml", "product_copy.yaml", "invoice_check.yaml"):
        pipeline = load_pipeline(EXAMPLES / path)
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
    assert result.code == 0 and document["errors"] == 0 and len(document["files"]) == 3


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
