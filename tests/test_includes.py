"""Shared prompt pieces: templates include and import files of the pipeline's folder, through the sandbox,
and nothing outside it."""

from __future__ import annotations

import asyncio
import os

import pytest

from runner import load_pipeline
from runner.errors import SpecError
from runner.fake import FakeOpenRouter
from runner.fake.server import mock_transport

from .conftest import invoke, write_pipeline

PIPELINE = """\
name: pieces
input: {type: object, required: [name], properties: {name: {type: string}}}
defaults: {model: google/gemini-2.5-flash-lite}
steps:
  hello:
    system: "{% include 'parts/rules.j2' %}"
    prompt: |
      {% import 'parts/macros.j2' as m %}
      {%- from 'parts/macros.j2' import polite -%}
      {{ polite(m.shout(input.name)) }}
"""


@pytest.fixture
def folder(tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "rules.j2").write_text("Be brief. {% include 'parts/tone.j2' %}", encoding="utf-8")
    (parts / "tone.j2").write_text("Be kind to {{ input.name }}.", encoding="utf-8")
    (parts / "macros.j2").write_text(
        "{% macro shout(text) %}{{ text | upper }}{% endmacro %}{% macro polite(text) %}Dear {{ text }}{% endmacro %}",
        encoding="utf-8",
    )
    return tmp_path


def test_includes_and_imports_from_the_pipelines_folder_render_with_the_records_values(folder, settings):
    fake = FakeOpenRouter()
    pipeline = load_pipeline(write_pipeline(folder, PIPELINE))
    result = asyncio.run(pipeline.run({"name": "ada"}, settings=settings, transport=mock_transport(fake)))
    assert result.status == "ok"
    (body,) = fake.chat_bodies()
    assert body["messages"] == [
        {"role": "system", "content": "Be brief. Be kind to ada."},
        {"role": "user", "content": "Dear ADA"},
    ]


def test_a_prompt_file_includes_pieces_named_from_the_pipelines_folder(folder, settings):
    prompts = folder / "prompts"
    prompts.mkdir()
    (prompts / "hello.j2").write_text("{% include 'parts/tone.j2' %} Hi!", encoding="utf-8")
    text = PIPELINE.split("    system:")[0] + "    prompt_file: prompts/hello.j2\n"
    fake = FakeOpenRouter()
    pipeline = load_pipeline(write_pipeline(folder, text))
    asyncio.run(pipeline.run({"name": "bo"}, settings=settings, transport=mock_transport(fake)))
    assert fake.chat_bodies()[0]["messages"] == [{"role": "user", "content": "Be kind to bo. Hi!"}]


def test_pieces_are_read_when_the_pipeline_loads(folder, settings):
    fake = FakeOpenRouter()
    pipeline = load_pipeline(write_pipeline(folder, PIPELINE))
    (folder / "parts" / "tone.j2").write_text("Changed after loading.", encoding="utf-8")
    asyncio.run(pipeline.run({"name": "ada"}, settings=settings, transport=mock_transport(fake)))
    assert fake.chat_bodies()[0]["messages"][0]["content"] == "Be brief. Be kind to ada."


def test_an_included_piece_renders_in_the_sandbox(folder, settings):
    (folder / "parts" / "tone.j2").write_text("{{ input.__class__.__mro__ }}", encoding="utf-8")
    pipeline = load_pipeline(write_pipeline(folder, PIPELINE))
    result = asyncio.run(pipeline.run({"name": "x"}, settings=settings, transport=mock_transport(FakeOpenRouter())))
    assert result.status == "failed" and result.error.kind == "render_error"
    assert "unsafe" in result.error.message


@pytest.mark.parametrize(
    ("statement", "words"),
    [
        ("{% include '../outside.j2' %}", "'..' is refused"),
        ("{% include 'parts/../../outside.j2' %}", "'..' is refused"),
        ("{% include '/etc/hostname' %}", "an absolute path is refused"),
        ("{% import '../outside.j2' as o %}", "`{% import '../outside.j2' %}`: '..' is refused"),
        ("{% extends '../outside.j2' %}", "`{% extends '../outside.j2' %}`: '..' is refused"),
        ("{% include ['parts/tone.j2', '../outside.j2'] %}", "'..' is refused"),
        ("{% include 'parts/' ~ input.name %}", "must be a literal string"),
        ("{% include 'parts/none.j2' %}", "no such file in the pipeline's folder"),
    ],
)
def test_a_piece_outside_the_folder_or_not_named_literally_is_a_load_error(folder, statement, words):
    (folder.parent / "outside.j2").write_text("secret", encoding="utf-8")
    text = PIPELINE.replace("{% include 'parts/rules.j2' %}", statement.replace('"', '\\"'))
    path = write_pipeline(folder, text)
    with pytest.raises(SpecError) as caught:
        load_pipeline(path)
    assert f"{path}:6: `system` of step 'hello': " in str(caught.value)
    assert words in str(caught.value)
    assert caught.value.exit_code == 2


def test_a_symbolic_link_leading_out_of_the_folder_is_refused(folder):
    (folder.parent / "outside.j2").write_text("secret", encoding="utf-8")
    os.symlink(folder.parent / "outside.j2", folder / "parts" / "link.j2")
    path = write_pipeline(folder, PIPELINE.replace("parts/rules.j2", "parts/link.j2"))
    with pytest.raises(SpecError, match=r"leads outside the pipeline's folder .* through a symbolic link"):
        load_pipeline(path)


def test_a_piece_that_includes_outside_names_its_own_file_and_line(folder):
    (folder / "parts" / "tone.j2").write_text("Be kind.\n{% include '../../x.j2' %}", encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_pipeline(write_pipeline(folder, PIPELINE))
    assert str(caught.value).startswith(f"{folder / 'parts' / 'tone.j2'}:2: included file ")
    assert "'..' is refused" in str(caught.value)


def test_a_syntax_error_in_a_piece_names_its_file_and_line(folder):
    (folder / "parts" / "macros.j2").write_text("ok\n{% macro broken( %}", encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_pipeline(write_pipeline(folder, PIPELINE))
    assert str(caught.value).startswith(f"{folder / 'parts' / 'macros.j2'}:2: included template 'parts/macros.j2'")


def test_validate_reports_a_refused_include_with_file_and_line(capsys, monkeypatch, folder):
    path = write_pipeline(folder, PIPELINE.replace("parts/rules.j2", "../rules.j2"))
    result = invoke(capsys, monkeypatch, "validate", str(path))
    assert result.code == 2
    assert f"{path}:6: error: `system` of step 'hello': `{{% include '../rules.j2' %}}`: '..' is refused" in result.err
