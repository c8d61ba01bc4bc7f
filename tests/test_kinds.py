"""Step kinds: the spec's step family agrees with the file's schema, and a new kind is one small
module registered in one call that runs through the real scheduler next to a chat step."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, fields
from typing import ClassVar

import pytest

from runner import load_pipeline
from runner.chat.catalog import bundled_catalog
from runner.check.rules import lint
from runner.errors import SpecError
from runner.fake.server import mock_transport
from runner.report.diagram import mermaid
from runner.run.dryrun import estimate
from runner.run.inputs import InputItem
from runner.run.results import StepResult
from runner.run.steps import register, unregister
from runner.spec.chat import BUILTIN_SETTINGS
from runner.spec.kinds import StepKind
from runner.spec.load import file_schema
from runner.spec.model import ChatStep, ForEach, StepBase, Template

from .conftest import cost_rows, write_pipeline


# The example kind: a step that renders one template and shouts it. Its spec value, its runner,
# and how the file recognises it, registered in one call (the `upper` fixture).
@dataclass(frozen=True, kw_only=True)
class UpperStep(StepBase):
    kind: ClassVar[str] = "upper"
    text: Template

    def templates(self) -> tuple[Template, ...]:
        return (self.text, *super().templates())


class UpperRunner:
    def __init__(self, services) -> None:
        self.renderer = services.renderer

    async def run(self, step: UpperStep, scope) -> StepResult:
        return StepResult(step.id, "ok", output=self.renderer.text(step, "upper", scope.context).upper())


UPPER = StepKind(
    "upper",
    keys=("upper",),
    schema={
        "type": "object",
        "additionalProperties": False,
        "properties": {"upper": {"type": "string"}, "needs": {"$ref": "#/$defs/step_base/properties/needs"}},
    },
    build=lambda step: UpperStep(**step.base(), text=step.template("upper")),
)


@pytest.fixture
def upper():
    register(UPPER, UpperRunner)
    yield UPPER
    unregister("upper")


SHOUT = """\
name: shout
input: {type: object, required: [ticket], properties: {ticket: {type: string}}}
defaults: {model: google/gemini-2.5-flash-lite}
steps:
  classify:
    prompt: "Label this ticket in one word: {{ input.ticket }}"
  shout:
    upper: "label: {{ steps.classify.output }}"
output:
  label: "{{ steps.shout.output }}"
"""


def test_a_new_step_kind_runs_through_the_scheduler_next_to_a_chat_step(upper, tmp_path, fake, settings, db_path):
    pipeline = load_pipeline(write_pipeline(tmp_path, SHOUT))
    assert [step.kind for step in pipeline.spec.steps] == ["chat", "upper"]
    assert pipeline.graph.parents["shout"] == ("classify",)
    result = asyncio.run(
        pipeline.run({"ticket": "My invoice is wrong"}, settings=settings, transport=mock_transport(fake))
    )
    assert result.status == "ok"
    assert result.output == {"label": f"LABEL: {result.steps['classify'].output}".upper()}
    assert fake.chat_requests == 1 and {row["step"] for row in cost_rows(db_path)} == {"classify"}
    # Asked for the models it may call, the new kind has none: the diagram labels it by its kind.
    assert "shout<br/><small>upper</small>" in mermaid(pipeline.spec, pipeline.graph)


def test_a_new_kind_is_checked_against_its_own_schema(upper, tmp_path):
    wrong = SHOUT.replace('upper: "label', 'model: openai/gpt-4o\n    upper: "label')
    # Every kind takes the StepBase keys (`when`, `for_each`, ...) besides its own.
    allowed = "as, for_each, max_items, needs, on_item_error, upper, when"
    with pytest.raises(SpecError, match=f"unknown key 'model' in step 'shout'; allowed keys: {allowed}"):
        load_pipeline(write_pipeline(tmp_path, wrong))


def test_without_the_kind_registered_its_key_is_an_unknown_chat_key(tmp_path):
    with pytest.raises(SpecError, match="unknown key 'upper' in step 'shout'"):
        load_pipeline(write_pipeline(tmp_path, SHOUT))


def test_the_files_chat_step_schema_and_the_spec_fields_agree():
    properties = set(file_schema()["$defs"]["chat_step"]["properties"])
    written = {field.name for field in fields(ChatStep)} - {"id", "line"}
    # `prompt_file` is another way to write `prompt`, `for_each`'s settings are part of its value;
    # everything else is one field each way.
    assert properties - {"prompt_file", *ForEach.KEYS} == written
    # `for_each` is one value whose settings (`as`, `max_items`, `on_item_error`) sit beside it in the file.
    assert set(file_schema()["$defs"]["step_base"]["properties"]) == {field.name for field in fields(StepBase)} - {
        "id",
        "line",
    } | set(ForEach.KEYS)
    assert {field.name for field in fields(ForEach)} == {"items", "name", "max_items", "on_item_error"}
    # `defaults` may set exactly the step's model settings.
    settings = set(file_schema()["$defs"]["settings"]["properties"])
    assert settings == {*BUILTIN_SETTINGS, "module", "model"}
    assert settings < written


def test_lint_and_the_dry_run_take_a_step_of_another_kind(upper, tmp_path):
    pipeline = load_pipeline(write_pipeline(tmp_path, SHOUT))
    catalog = bundled_catalog()
    assert [finding for finding in lint(pipeline.spec, pipeline.graph, catalog) if finding.step == "shout"] == []
    items = [InputItem(1, {"ticket": "Where is my parcel?"})]
    estimated = estimate(pipeline.spec, pipeline.renderer, catalog, items, pipeline.check_input)
    # Only the chat step calls a model; the new kind is neither priced nor a render error.
    assert [row.step for row in estimated.rows] == ["classify"] and estimated.render_errors == 0
    assert estimated.records == 1 and estimated.rows[0].calls == 1
