from __future__ import annotations

import re
from pathlib import Path

import pytest

from runner.api import load_pipeline
from runner.errors import InputError, SpecError, SpecErrors
from runner.run.inputs import read_inputs
from runner.spec import load_spec
from runner.testing.assertions import Assertion, check

from .conftest import EXAMPLES, FIXTURES, write_pipeline

BAD = sorted((FIXTURES / "pipelines").glob("bad_*.yaml"))


def _expectations(path: Path) -> tuple[int | None, int | None, list[str]]:
    text = path.read_text()
    line = re.search(r"^# expect-line: (\d+)$", text, re.MULTILINE)
    column = re.search(r"^# expect-column: (\d+)$", text, re.MULTILINE)
    words = re.search(r"^# expect: (.+)$", text, re.MULTILINE)
    return (
        int(line.group(1)) if line else None,
        int(column.group(1)) if column else None,
        [word.strip() for word in words.group(1).split("|")],
    )


def test_there_are_many_bad_fixtures():
    assert len(BAD) >= 20


@pytest.mark.parametrize("path", BAD, ids=[path.stem for path in BAD])
def test_bad_pipeline_fails_with_file_line_and_fix(path):
    line, column, words = _expectations(path)
    with pytest.raises(SpecError) as caught:
        load_pipeline(path)
    error = caught.value
    errors = error.errors if isinstance(error, SpecErrors) else (error,)
    message = str(error)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert str(path) in message
    if line is not None:
        assert line in [item.line for item in errors], message
        assert f"{path}:{line}" in message
    if column is not None:
        assert f"{path}:{line}:{column}: " in message
    assert error.exit_code == 2


@pytest.mark.parametrize(
    "path", sorted(p for p in EXAMPLES.glob("*.yaml") if not p.name.endswith(".cases.yaml")), ids=lambda path: path.stem
)
def test_examples_load(path):
    pipeline = load_pipeline(path)
    assert pipeline.spec.steps


def test_defaults_are_inherited_and_overridden():
    spec = load_spec(EXAMPLES / "ticket_triage.yaml")
    classify, extract, reply = (spec.step(name) for name in ("classify", "extract", "reply"))
    assert classify.model == extract.model == "google/gemini-2.5-flash-lite"
    assert classify.temperature == 0 and extract.temperature == 0.2
    assert classify.module == "triage" and reply.module == "drafting"
    assert reply.model == "anthropic/claude-sonnet-4.5"
    assert reply.reasoning.effort == "medium" and classify.reasoning.effort == "low"
    assert classify.fallback_models == ("google/gemini-2.5-flash",)
    assert dict(extract.provider) == {"require_parameters": True}
    assert extract.retries == 3 and extract.timeout_s == 60


def test_builtin_settings_apply_when_nothing_is_said(tmp_path):
    path = write_pipeline(
        tmp_path,
        "name: bare\nsteps:\n  only:\n    model: google/gemini-2.5-flash\n    prompt: hi\n",
    )
    step = load_spec(path).step("only")
    assert step.module == "bare"  # the pipeline name is the default cost label
    assert (step.temperature, step.max_tokens, step.reasoning.effort) == (1.0, 1024, "low")
    assert (step.retries, step.repair_attempts, step.fallback_mode) == (3, 1, "client")


def test_prompt_file_and_schema_file_resolve_relative_to_the_pipeline(tmp_path):
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "ask.j2").write_text("Hello {{ input.name }}")
    (tmp_path / "out.json").write_text(
        '{"type": "object", "additionalProperties": false, "required": ["a"], "properties": {"a": {"type": "string"}}}'
    )
    path = write_pipeline(
        tmp_path,
        "name: files\ndefaults: {model: google/gemini-2.5-flash}\n"
        "steps:\n  ask:\n    prompt_file: prompts/ask.j2\n    schema: out.json\n",
    )
    step = load_spec(path).step("ask")
    assert step.prompt.source == "Hello {{ input.name }}"
    assert step.prompt.path.endswith("ask.j2")
    assert step.schema["required"] == ("a",)


def test_schema_file_outside_the_folder_is_refused(tmp_path):
    inner = tmp_path / "inner"
    inner.mkdir()
    (tmp_path / "secret.json").write_text("{}")
    path = write_pipeline(
        inner,
        "name: x\ndefaults: {model: google/gemini-2.5-flash}\n"
        "steps:\n  a:\n    prompt: hi\n    schema: ../secret.json\n",
    )
    with pytest.raises(SpecError, match="points outside the pipeline's folder"):
        load_spec(path)


def test_schema_file_with_bad_json_names_that_file_and_line(tmp_path):
    (tmp_path / "broken.json").write_text('{\n  "type": "object",\n  oops\n}')
    path = write_pipeline(
        tmp_path,
        "name: x\ndefaults: {model: google/gemini-2.5-flash}\nsteps:\n  a:\n    prompt: hi\n    schema: broken.json\n",
    )
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.path.endswith("broken.json") and caught.value.line == 3


def test_several_mistakes_are_reported_together(tmp_path):
    path = write_pipeline(
        tmp_path,
        "name: x\ndefaults: {model: google/gemini-2.5-flash}\nsteps:\n"
        "  a:\n    prompt: hi\n    temprature: 1\n  b:\n    prompt: hi\n    max_token: 5\n",
    )
    with pytest.raises(SpecErrors) as caught:
        load_spec(path)
    assert [error.line for error in caught.value.errors] == [6, 9]
    assert "did you mean 'max_tokens'" in str(caught.value)


def test_bare_when_expression_means_the_same_as_braces(tmp_path):
    path = write_pipeline(
        tmp_path,
        "name: x\ndefaults: {model: google/gemini-2.5-flash}\nsteps:\n  a:\n    prompt: hi\n"
        "  b:\n    when: steps.a.output == 'yes'\n    prompt: hi\n",
    )
    pipeline = load_pipeline(path)
    assert pipeline.spec.step("b").when.source == "{{ steps.a.output == 'yes' }}"
    assert pipeline.graph.parents["b"] == ("a",)


def test_spec_is_frozen():
    spec = load_spec(EXAMPLES / "ticket_triage.yaml")
    with pytest.raises(AttributeError):
        spec.steps[0].model = "other/model"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.step("extract").schema["type"] = "array"  # type: ignore[index]


# Messages name JSON's types (null, string, object, array, number, boolean), never Python's.


def test_a_record_that_is_not_an_object_is_named_by_its_json_type():
    pipeline = load_pipeline(EXAMPLES / "ticket_triage.yaml")
    with pytest.raises(InputError, match=r"must be a JSON object, not array$"):
        pipeline.check_input(["hi"], key="3")


def test_an_input_line_that_is_not_an_object_is_named_by_its_json_type(tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text('{"ticket": "a"}\nnull\n')
    problems = [item.problem for item in read_inputs(str(data)) if item.problem]
    assert problems == ["line 2 is a JSON null, not an object"]


def test_an_input_field_of_the_wrong_type_is_named_by_json_types():
    pipeline = load_pipeline(EXAMPLES / "ticket_triage.yaml")
    with pytest.raises(InputError, match=r"ticket: must be a string, not null$"):
        pipeline.check_input({"ticket": None}, key="3")


def test_a_json_schema_assertion_names_json_types():
    assertion = Assertion("json_schema", {"type": "boolean"}, "output", None, None, None, 1)
    result = check(assertion, {"output": None, "steps": {}, "input": {}})
    assert not result.passed and result.detail == "must be a boolean, not null"
