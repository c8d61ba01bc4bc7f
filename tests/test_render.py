from __future__ import annotations

import json
import sqlite3

import pytest

from runner.api import load_pipeline
from runner.chat.messages import Message
from runner.errors import RenderError

from .conftest import EXAMPLES, invoke, write_pipeline

HEAD = "name: r\ndefaults: {model: google/gemini-2.5-flash}\n"


def _view(output, status="ok"):
    return {"output": output, "model": "m/x", "cost_usd": 0.001, "usage": None, "reasoning": None, "status": status}


def test_input_values_are_data_not_templates(tmp_path):
    path = write_pipeline(tmp_path, HEAD + "steps:\n  a:\n    prompt: 'Say: {{ input.text }}'\n")
    pipeline = load_pipeline(path)
    step = pipeline.spec.step("a")
    messages = pipeline.renderer.messages(step, {"input": {"text": "{{ 7*7 }} {% for x in y %}"}, "steps": {}})
    assert messages == (Message.text_message("user", "Say: {{ 7*7 }} {% for x in y %}"),)


def test_system_message_comes_first():
    pipeline = load_pipeline(EXAMPLES / "ticket_triage.yaml")
    messages = pipeline.renderer.messages(pipeline.spec.step("classify"), {"input": {"ticket": "Help"}, "steps": {}})
    assert [message.role for message in messages] == ["system", "user"]
    assert messages[1].text == "Ticket:\nHelp"


def test_undefined_variable_is_an_error_naming_step_and_field(tmp_path):
    path = write_pipeline(tmp_path, HEAD + "steps:\n  a:\n    prompt: 'Say: {{ input.missing }}'\n")
    pipeline = load_pipeline(path)
    with pytest.raises(RenderError, match=r"`prompt` of step 'a'.*missing"):
        pipeline.renderer.messages(pipeline.spec.step("a"), {"input": {}, "steps": {}})


def test_sandbox_blocks_unsafe_attribute_access(tmp_path):
    path = write_pipeline(tmp_path, HEAD + "steps:\n  a:\n    prompt: '{{ input.text.__class__.__mro__ }}'\n")
    pipeline = load_pipeline(path)
    with pytest.raises(RenderError):
        pipeline.renderer.messages(pipeline.spec.step("a"), {"input": {"text": "x"}, "steps": {}})


def test_when_is_a_boolean(tmp_path):
    path = write_pipeline(
        tmp_path,
        HEAD
        + "steps:\n  a:\n    prompt: hi\n    schema: {type: object, additionalProperties: false, required: [kind, flag],"
        " properties: {kind: {type: string}, flag: {type: boolean}}}\n"
        "  b:\n    when: \"{{ steps.a.output.kind != 'spam' }}\"\n    prompt: hi\n"
        "  c:\n    when: 'Flag: {{ steps.a.output.flag }}'\n    prompt: hi\n",
    )
    pipeline = load_pipeline(path)
    b, c = pipeline.spec.step("b"), pipeline.spec.step("c")
    spam = {"input": {}, "steps": {"a": _view({"kind": "spam", "flag": False})}}
    ham = {"input": {}, "steps": {"a": _view({"kind": "ham", "flag": True})}}
    assert pipeline.renderer.should_run(b, spam) is False
    assert pipeline.renderer.should_run(b, ham) is True
    # Mixed text is rendered, then read as a word: "Flag: False" is text, so it is true.
    assert pipeline.renderer.should_run(c, spam) is True


def test_when_text_false_words_are_false(tmp_path):
    path = write_pipeline(
        tmp_path, HEAD + "steps:\n  a:\n    when: '{% if input.go %}yes{% else %}no{% endif %}'\n    prompt: hi\n"
    )
    pipeline = load_pipeline(path)
    step = pipeline.spec.step("a")
    assert pipeline.renderer.should_run(step, {"input": {"go": False}, "steps": {}}) is False
    assert pipeline.renderer.should_run(step, {"input": {"go": True}, "steps": {}}) is True


def test_output_single_expression_keeps_its_type_and_mixed_text_is_a_string():
    pipeline = load_pipeline(EXAMPLES / "invoice_check.yaml")
    context = {
        "input": {},
        "steps": {
            "extract": _view({"vendor": "ACME", "total": 3.5}),
            "audit": _view({"arithmetic_ok": True, "risk": "low"}),
            "notify": _view(None, status="skipped"),
        },
    }
    output = pipeline.renderer.output(context)
    assert output["invoice"] == {"vendor": "ACME", "total": 3.5}
    assert output["needs_review"] is False
    assert output["note"] is None


def test_keys_win_over_dict_methods(tmp_path):
    path = write_pipeline(
        tmp_path,
        HEAD + "steps:\n  copy:\n    prompt: hi\n  items:\n    prompt: '{{ steps.copy.output }}'\n"
        "output: '{{ steps.items.output }} {{ steps.copy.output }}'\n",
    )
    pipeline = load_pipeline(path)
    context = {"input": {}, "steps": {"copy": _view("A"), "items": _view("B")}}
    assert pipeline.renderer.messages(pipeline.spec.step("items"), context)[0].text == "A"
    assert pipeline.renderer.output(context) == "B A"


def test_a_step_only_sees_its_ancestors(tmp_path):
    path = write_pipeline(tmp_path, HEAD + "steps:\n  a:\n    prompt: hi\n  b:\n    prompt: '{{ input.x }}'\n")
    pipeline = load_pipeline(path)
    scoped = pipeline.renderer._scoped("b", {"input": {"x": 1}, "steps": {"a": _view("secret")}})
    assert scoped["steps"] == {}


def test_missing_output_section_gives_every_step_output(tmp_path):
    path = write_pipeline(tmp_path, HEAD + "steps:\n  a:\n    prompt: hi\n  b:\n    prompt: hi\n")
    pipeline = load_pipeline(path)
    assert pipeline.renderer.output({"input": {}, "steps": {"a": _view("x"), "b": _view({"k": 1})}}) == {
        "a": "x",
        "b": {"k": 1},
    }


OPTIONAL_FIELD = """name: optional
defaults: {model: google/gemini-2.5-flash-lite}
input:
  type: object
  required: [text]
  properties:
    text: {type: string}
    note: {type: string}
steps:
  a:
    prompt: "{{ input.note }}"
output: {note: "{{ input.note }}", reply: "{{ steps.a.output }}"}
"""


def test_a_missing_optional_field_fails_only_its_record(capsys, monkeypatch, tmp_path, db_path):
    path = write_pipeline(tmp_path, OPTIONAL_FIELD)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"text": "1", "note": "n1"}\n{"text": "2"}\n{"text": "3", "note": "n3"}\n')
    result = invoke(capsys, monkeypatch, "run", str(path), "--mock", "--inputs", str(inputs))
    assert result.code == 1, result.err
    lines = {line["key"]: line for line in map(json.loads, result.out.splitlines())}
    assert [lines[key]["status"] for key in (1, 2, 3)] == ["ok", "failed", "ok"]
    error = lines[2]["error"]
    assert error["kind"] == "render_error" and error["step"] == "a"
    assert f"{path}:11: `prompt` of step 'a'" in error["message"] and "note" in error["message"]
    with sqlite3.connect(db_path) as db:
        stored = dict(db.execute("SELECT record_key, status FROM records"))
    assert stored == {"1": "ok", "2": "failed", "3": "ok"}


@pytest.mark.parametrize(
    "output",
    ['"{{ input.note }}"', '{x: "{{ input.note }}"}', '["{{ [input.note] }}"]', '"Note: {{ input.note }}"'],
)
def test_an_undefined_output_value_is_a_render_error_not_a_crash(tmp_path, output):
    path = write_pipeline(tmp_path, HEAD + f"steps:\n  a:\n    prompt: hi\noutput: {output}\n")
    pipeline = load_pipeline(path)
    with pytest.raises(RenderError, match=r"`output[^`]*`: .*note"):
        pipeline.renderer.output({"input": {}, "steps": {"a": _view("x")}})


@pytest.mark.parametrize("field", ["prompt", "system", "when"])
def test_a_lone_undefined_expression_in_a_step_is_a_render_error(tmp_path, field):
    extra = "" if field == "prompt" else f"    {field}: '{{{{ input.note }}}}'\n"
    prompt = "'{{ input.note }}'" if field == "prompt" else "hi"
    path = write_pipeline(tmp_path, HEAD + f"steps:\n  a:\n{extra}    prompt: {prompt}\n")
    pipeline = load_pipeline(path)
    step = pipeline.spec.step("a")
    context = {"input": {}, "steps": {}}
    with pytest.raises(RenderError, match=rf"`{field}` of step 'a'.*note"):
        if field == "when":
            pipeline.renderer.should_run(step, context)
        else:
            pipeline.renderer.messages(step, context)


def test_a_render_error_names_the_line_inside_a_block_prompt(tmp_path):
    path = write_pipeline(
        tmp_path,
        HEAD + "steps:\n  a:\n    prompt: |\n      Ticket:\n      {{ input.text }}\n      {{ input.note.upper() }}\n",
    )
    pipeline = load_pipeline(path)
    with pytest.raises(RenderError, match=rf"^{path}:8: `prompt` of step 'a': .*note"):
        pipeline.renderer.messages(pipeline.spec.step("a"), {"input": {"text": "t"}, "steps": {}})


def test_a_render_error_in_a_prompt_file_names_the_file_and_where_it_is_named(tmp_path):
    (tmp_path / "ask.j2").write_text("Hello\n{{ input.name.first }}\n")
    path = write_pipeline(tmp_path, HEAD + "steps:\n  a:\n    prompt_file: ask.j2\n")
    pipeline = load_pipeline(path)
    with pytest.raises(RenderError) as caught:
        pipeline.renderer.messages(pipeline.spec.step("a"), {"input": {"name": {}}, "steps": {}})
    assert str(caught.value).startswith(f"{tmp_path / 'ask.j2'}:2: `prompt_file` of step 'a' (named at {path}:5): ")


def test_undefined_values_are_explained_in_json_words(tmp_path):
    path = write_pipeline(
        tmp_path, HEAD + "steps:\n  a:\n    prompt: '{{ input.customer.name }} {{ input.tags[3] }}'\n"
    )
    pipeline = load_pipeline(path)
    step = pipeline.spec.step("a")
    with pytest.raises(RenderError, match=r"null \(a skipped step's output, or a null value\) has no property 'name'$"):
        pipeline.renderer.messages(step, {"input": {"customer": None, "tags": []}, "steps": {}})
    with pytest.raises(RenderError, match=r"object has no property 'customer'$"):
        pipeline.renderer.messages(step, {"input": {}, "steps": {}})
    with pytest.raises(RenderError, match=r"array has no element 3$"):
        pipeline.renderer.messages(step, {"input": {"customer": {"name": "x"}, "tags": []}, "steps": {}})


def test_type_errors_in_templates_name_json_types(tmp_path):
    path = write_pipeline(tmp_path, HEAD + "steps:\n  a:\n    prompt: '{{ input.count + input.label }}'\n")
    pipeline = load_pipeline(path)
    with pytest.raises(RenderError, match=r"TypeError: unsupported operand type\(s\) for \+: 'number' and 'string'"):
        pipeline.renderer.messages(pipeline.spec.step("a"), {"input": {"count": 1, "label": "x"}, "steps": {}})
