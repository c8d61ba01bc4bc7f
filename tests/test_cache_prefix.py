"""Prompt-cache breakpoints only on a system message's stable prefix: a breakpoint after per-record text
would make every request write the cache (at 1.25x the input price) and none read it."""

from __future__ import annotations

import asyncio
import json

import pytest

from runner import load_pipeline
from runner.chat.request import OutputMode, build_body
from runner.fake.server import mock_transport

from .conftest import cost_rows, write_pipeline
from .test_prompt_cache import POLICY

MODEL = "anthropic/claude-haiku-4.5"
LEADS_PER_RECORD = "Customer {{ input.q }} writes. " + POLICY
ENDS_PER_RECORD = POLICY + "Ticket: {{ input.q }}"


def _pipeline(tmp_path, system, *, model=MODEL, prompt_cache="auto"):
    text = (
        f"name: cached\nsteps:\n  answer:\n    model: {model}\n    prompt_cache: {prompt_cache}\n"
        f"    system: {json.dumps(system)}\n    prompt: 'Answer the customer.'\n"
    )
    return load_pipeline(write_pipeline(tmp_path, text))


def _system(pipeline, model=MODEL, question="Can I return shoes?"):
    step = pipeline.spec.step("answer")
    messages = pipeline.renderer.messages(step, {"input": {"q": question}, "steps": {}})
    body = build_body(step, messages, model, schema=None, mode=OutputMode.TEXT, user_id=None)
    return body["messages"][0]["content"]


def test_per_record_text_before_the_stable_text_gets_no_breakpoint(tmp_path):
    content = _system(_pipeline(tmp_path, LEADS_PER_RECORD))
    assert content == "Customer Can I return shoes? writes. " + POLICY  # a plain string: nothing marked


def test_the_breakpoint_closes_the_stable_text_before_the_per_record_text(tmp_path):
    content = _system(_pipeline(tmp_path, ENDS_PER_RECORD))
    assert content == [
        {"type": "text", "text": POLICY + "Ticket: ", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Can I return shoes?"},
    ]


def test_implicit_caching_models_get_the_system_text_as_one_string_as_before(tmp_path):
    pipeline = _pipeline(tmp_path, ENDS_PER_RECORD)
    assert _system(pipeline, "openai/gpt-4o-mini") == POLICY + "Ticket: Can I return shoes?"
    off = _pipeline(tmp_path, ENDS_PER_RECORD, prompt_cache="off")
    assert _system(off) == POLICY + "Ticket: Can I return shoes?"


def test_a_short_stable_text_before_per_record_text_is_not_marked(tmp_path):
    content = _system(_pipeline(tmp_path, "Be brief. " + ENDS_PER_RECORD.removeprefix(POLICY) + POLICY))
    assert isinstance(content, str) and content.startswith("Be brief. Ticket: Can I return shoes?")


def test_static_includes_are_stable_and_per_record_ones_are_not(tmp_path):
    (tmp_path / "rules.txt").write_text(POLICY, encoding="utf-8")
    (tmp_path / "greeting.txt").write_text("Customer {{ input.q }} writes.\n", encoding="utf-8")
    included = _system(_pipeline(tmp_path, "{% include 'rules.txt' %}Ticket: {{ input.q }}"))
    assert included[0] == {"type": "text", "text": POLICY + "Ticket: ", "cache_control": {"type": "ephemeral"}}
    varying = _system(_pipeline(tmp_path, "{% include 'greeting.txt' %}" + POLICY))
    assert isinstance(varying, str) and varying.startswith("Customer Can I return shoes? writes.")


@pytest.mark.parametrize("system", [LEADS_PER_RECORD, ENDS_PER_RECORD])
def test_auto_never_costs_more_than_off(fake, settings, tmp_path, db_path, system):
    """The reviewer's case: 20 records through the fake, which bills writes at 1.25x and reads at 0.1x."""
    costs = {}
    for setting in ("auto", "off"):
        folder = tmp_path / setting
        folder.mkdir()
        pipeline = _pipeline(folder, system, prompt_cache=setting)
        before = len(cost_rows(db_path)) if db_path.exists() else 0
        for index in range(20):
            record = {"q": f"question {index:02d}{setting[:2]}"}  # no response-cache hit across the runs
            result = asyncio.run(pipeline.run(record, settings=settings, transport=mock_transport(fake)))
            assert result.status == "ok"
        costs[setting] = sum(row["cost_usd"] for row in cost_rows(db_path)[before:])
    assert costs["auto"] <= costs["off"]
    if system == ENDS_PER_RECORD:
        assert costs["auto"] < 0.5 * costs["off"]  # the stable part is read from the cache


def _warnings(pipeline):
    from runner.chat.catalog import bundled_catalog
    from runner.check.rules import lint

    findings = lint(pipeline.spec, pipeline.graph, bundled_catalog())
    return [f.message for f in findings if f.severity == "warning" and "system message" in f.message]


def test_validate_warns_when_per_record_text_in_the_system_message_limits_the_breakpoint(tmp_path):
    [ends] = _warnings(_pipeline(tmp_path, ENDS_PER_RECORD))
    assert "only its stable text before that" in ends and "gets a cache breakpoint" in ends
    assert "put the per-record text in the user prompt" in ends and "stable instructions first" not in ends
    [short] = _warnings(_pipeline(tmp_path, "You answer tickets. Ticket: {{ input.q }}"))
    assert f"on {MODEL} it gets no cache breakpoint" in short and "user prompt" in short
    [leads] = _warnings(_pipeline(tmp_path, LEADS_PER_RECORD))
    assert "no cache breakpoint" in leads


def test_validate_is_quiet_for_a_stable_system_message_or_an_implicitly_cached_model(tmp_path):
    (tmp_path / "rules.txt").write_text(POLICY, encoding="utf-8")
    assert _warnings(_pipeline(tmp_path, "{% include 'rules.txt' %}\nAnswer briefly.")) == []
    assert _warnings(_pipeline(tmp_path, ENDS_PER_RECORD, model="openai/gpt-4o-mini")) == []
    assert _warnings(_pipeline(tmp_path, ENDS_PER_RECORD, prompt_cache="off")) == []
    [leads] = _warnings(_pipeline(tmp_path, LEADS_PER_RECORD, model="openai/gpt-4o-mini"))
    assert "starts with text that differs per record" in leads and "user prompt" in leads
