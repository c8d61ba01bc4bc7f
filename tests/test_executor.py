"""Each branch of the failure taxonomy: the calls made, the cost rows written, the result."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging

import pytest

from runner.api import load_pipeline
from runner.errors import AuthenticationError, CreditsExhausted
from runner.fake import Fault
from runner.fake.server import mock_transport

from .conftest import EXAMPLES, cost_rows, write_pipeline

PRIMARY = "google/gemini-2.5-flash-lite"
FALLBACK = "google/gemini-2.5-flash"

LABEL = f"""
name: label
defaults:
  model: {PRIMARY}
  fallback_models: [{FALLBACK}]
  retries: 2
  repair_attempts: 1
steps:
  label:
    module: triage
    prompt: "Label: {{{{ input.text }}}}"
    schema:
      type: object
      additionalProperties: false
      required: [category]
      properties:
        category: {{type: string, enum: [billing, bug]}}
output: "{{{{ steps.label.output.category }}}}"
"""


@pytest.fixture
def label(tmp_path):
    return load_pipeline(write_pipeline(tmp_path, LABEL))


def fast(settings):
    return dataclasses.replace(settings, backoff_base_s=0.0, backoff_max_s=0.0)


def run(pipeline, fake, settings, record=None, user_id="user-7"):
    async def go():
        async with pipeline.session(fast(settings), transport=mock_transport(fake), user_id=user_id) as session:
            return await session.run(record or {"text": "I was charged twice"})

    return asyncio.run(go())


def chat_models(fake):
    return [body["model"] for body in fake.chat_bodies()]


def outcomes(db_path):
    return [(row["attempt"], row["requested_model"], row["outcome"]) for row in cost_rows(db_path)]


def test_success_is_one_call_and_one_cost_row(label, fake, settings, db_path):
    result = run(label, fake, settings)
    assert result.status == "ok" and result.output in ("billing", "bug")
    [row] = cost_rows(db_path)
    body = fake.chat_bodies()[0]
    assert row["id"].startswith("gen-") and row["model"] == PRIMARY and row["module"] == "triage"
    assert row["user_id"] == "user-7" == body["user"]
    assert row["cost_usd"] == pytest.approx(result.cost_usd) and row["cost_usd"] > 0
    assert row["outcome"] == "ok" and row["attempt"] == 1 and row["cached"] == 0
    assert row["prompt_tokens"] > 0 and row["total_tokens"] == row["prompt_tokens"] + row["completion_tokens"]


def test_request_body_carries_every_setting(label, fake, settings):
    run(label, fake, settings)
    body = fake.chat_bodies()[0]
    assert body["temperature"] == 1.0 and body["max_tokens"] == 1024 and body["reasoning"] == {"effort": "low"}
    assert body["stream"] is False
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["strict"] is True
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["category"]
    assert "models" not in body and "extra_body" not in body


def test_rate_limit_then_success_retries_the_same_model(label, fake, settings, db_path):
    fake.enqueue(Fault("status", status=429, retry_after="0"))
    assert run(label, fake, settings).status == "ok"
    assert chat_models(fake) == [PRIMARY, PRIMARY]
    assert outcomes(db_path) == [(1, PRIMARY, "ok")]  # the 429 was not billed


def test_server_errors_exhaust_retries_then_fall_back(label, fake, settings, db_path):
    fake.enqueue(Fault("status", status=502, model=PRIMARY, times=3))
    result = run(label, fake, settings)
    assert result.status == "ok" and result.steps["label"].model == FALLBACK
    assert chat_models(fake) == [PRIMARY] * 3 + [FALLBACK]
    assert outcomes(db_path) == [(1, FALLBACK, "ok")]


def test_no_endpoints_moves_to_the_next_model_at_once(label, fake, settings, db_path):
    fake.enqueue(Fault("status", status=404, model=PRIMARY))
    assert run(label, fake, settings).status == "ok"
    assert chat_models(fake) == [PRIMARY, FALLBACK]


@pytest.mark.parametrize("status", [400, 403])
def test_rejected_request_fails_the_step_without_fallback(label, fake, settings, db_path, status, caplog):
    fake.enqueue(Fault("status", status=status, message="Input flagged: violence", metadata={"reasons": ["violence"]}))
    with caplog.at_level(logging.WARNING):
        result = run(label, fake, settings)
    assert result.status == "failed" and result.output is None
    assert result.error.kind == "rejected" and result.error.step == "label"
    assert chat_models(fake) == [PRIMARY]
    assert cost_rows(db_path) == []
    assert "violence" in caplog.text  # full detail in the log ...
    assert "violence" not in json.dumps(result.line())  # ... never in the output


@pytest.mark.parametrize(("status", "error"), [(401, AuthenticationError), (402, CreditsExhausted)])
def test_auth_and_credits_stop_the_whole_run(fake, settings, db_path, status, error):
    pipeline = load_pipeline(EXAMPLES / "ticket_triage.yaml")
    fake.enqueue(Fault("status", status=status))
    with pytest.raises(error) as caught:
        run(pipeline, fake, settings, {"ticket": "hello"})
    assert caught.value.exit_code == 3
    # classify and extract were in flight together; reply (their dependent) was never called.
    assert len(fake.chat_bodies()) <= 2
    assert "anthropic/claude-sonnet-4.5" not in chat_models(fake)


@pytest.mark.parametrize("finish_reason", ["content_filter", "error", "length"])
def test_bad_finish_reason_is_a_billed_failed_attempt_then_fallback(label, fake, settings, db_path, finish_reason):
    fake.enqueue(Fault("finish", finish_reason=finish_reason, model=PRIMARY))
    result = run(label, fake, settings)
    assert result.status == "ok"
    assert chat_models(fake) == [PRIMARY, FALLBACK]
    assert outcomes(db_path) == [(1, PRIMARY, finish_reason), (2, FALLBACK, "ok")]
    assert result.steps["label"].cost_usd == pytest.approx(sum(row["cost_usd"] for row in cost_rows(db_path)))


def test_error_object_inside_a_200_is_a_failed_attempt(label, fake, settings, db_path):
    fake.enqueue(Fault("error_in_body", model=PRIMARY, message="upstream exploded"))
    assert run(label, fake, settings).status == "ok"
    assert outcomes(db_path) == [(1, PRIMARY, "error"), (2, FALLBACK, "ok")]


def test_invalid_json_is_re_asked_with_the_reply_and_the_error(label, fake, settings, db_path):
    fake.enqueue(Fault("content", content="Sure! The category is billing.", model=PRIMARY))
    assert run(label, fake, settings).status == "ok"
    assert chat_models(fake) == [PRIMARY, PRIMARY]
    assert outcomes(db_path) == [(1, PRIMARY, "invalid_json"), (2, PRIMARY, "ok")]
    first, second = fake.chat_bodies()
    assert second["messages"][: len(first["messages"])] == first["messages"]
    assistant, correction = second["messages"][-2:]
    assert assistant == {"role": "assistant", "content": "Sure! The category is billing."}
    assert correction["role"] == "user" and "not valid JSON" in correction["content"]


def test_schema_mismatch_after_repairs_falls_back(label, fake, settings, db_path):
    fake.enqueue(Fault("content", content='{"category": "refund"}', model=PRIMARY, times=2))
    result = run(label, fake, settings)
    assert result.status == "ok" and result.steps["label"].model == FALLBACK
    assert outcomes(db_path) == [(1, PRIMARY, "schema_mismatch"), (2, PRIMARY, "schema_mismatch"), (3, FALLBACK, "ok")]
    repair = fake.chat_bodies()[1]["messages"][-1]["content"]
    assert "at /category: 'refund' is not one of ['billing', 'bug']" in repair


def test_api_errors_never_reach_a_prompt(label, fake, settings):
    fake.enqueue(Fault("status", status=500, message="Internal kaboom 42", model=PRIMARY))
    fake.enqueue(Fault("content", content="not json", model=PRIMARY))
    assert run(label, fake, settings).status == "ok"
    for body in fake.chat_bodies():
        assert "kaboom" not in json.dumps(body)


def test_fenced_json_is_accepted(label, fake, settings, db_path):
    fake.enqueue(Fault("content", content='```json\n{"category": "bug"}\n```'))
    result = run(label, fake, settings)
    assert result.output == "bug" and len(fake.chat_bodies()) == 1


def test_every_model_failing_fails_the_record_with_a_safe_summary(label, fake, settings, db_path):
    fake.enqueue(Fault("content", content="nope", times=4))
    result = run(label, fake, settings)
    assert result.status == "failed"
    assert result.line()["error"] == {
        "kind": "invalid_json",
        "step": "label",
        "attempts": 4,
        "models": [PRIMARY, FALLBACK],
        "message": "the reply is not valid JSON (Expecting value at line 1, column 1)",  # the runner's words
    }
    assert [row["outcome"] for row in cost_rows(db_path)] == ["invalid_json"] * 4


def test_transport_failures_on_every_model_fail_the_step(label, fake, settings, db_path):
    fake.enqueue(Fault("drop", times=6))
    result = run(label, fake, settings)
    assert result.status == "failed" and result.error.kind == "unavailable"
    assert chat_models(fake) == [PRIMARY] * 3 + [FALLBACK] * 3
    assert cost_rows(db_path) == []


def test_server_side_fallback_records_the_model_that_answered(tmp_path, fake, settings, db_path):
    pipeline = load_pipeline(
        write_pipeline(tmp_path, LABEL.replace("retries: 2", "retries: 2\n  fallback_mode: server"))
    )
    fake.enqueue(Fault("status", status=503, model=PRIMARY))
    result = run(pipeline, fake, settings)
    [body] = fake.chat_bodies()
    assert body["model"] == PRIMARY and body["models"] == [PRIMARY, FALLBACK]
    [row] = cost_rows(db_path)
    assert (row["requested_model"], row["model"]) == (PRIMARY, FALLBACK)
    assert result.steps["label"].model == FALLBACK


def test_reasoning_text_is_kept_in_the_step_result(tmp_path, fake, settings):
    pipeline = load_pipeline(
        write_pipeline(tmp_path, LABEL.replace("retries: 2", "retries: 2\n  reasoning: {effort: high}"))
    )
    result = run(pipeline, fake, settings)
    assert result.steps["label"].reasoning.startswith("Mock reasoning")
    assert fake.chat_bodies()[0]["reasoning"] == {"effort": "high"}


def test_model_without_structured_outputs_gets_json_mode_and_schema_in_system(tmp_path, fake, settings):
    pipeline = load_pipeline(write_pipeline(tmp_path, LABEL.replace(PRIMARY, "meta-llama/llama-3.1-8b-instruct", 1)))
    result = run(pipeline, fake, settings)
    body = fake.chat_bodies()[0]
    assert result.status == "ok"
    assert body["response_format"] == {"type": "json_object"}
    assert body["messages"][0]["role"] == "system" and '"required": ["category"]' in body["messages"][0]["content"]


def test_model_without_json_mode_gets_the_schema_in_the_prompt_only(tmp_path, fake, settings):
    pipeline = load_pipeline(write_pipeline(tmp_path, LABEL.replace(PRIMARY, "mistralai/mistral-7b-instruct", 1)))
    assert run(pipeline, fake, settings).status == "ok"
    body = fake.chat_bodies()[0]
    assert "response_format" not in body and "JSON Schema" in body["messages"][0]["content"]


def test_reply_without_usage_writes_no_cost_row(label, fake, settings, db_path):
    fake.enqueue(Fault("no_usage"))
    assert run(label, fake, settings).status == "ok"
    assert cost_rows(db_path) == []


def test_skipped_step_skips_dependents_and_output_shows_null(fake, settings, db_path):
    pipeline = load_pipeline(EXAMPLES / "invoice_check.yaml")
    fake.enqueue(Fault("content", content='{"arithmetic_ok": true, "risk": "low"}', model="google/gemini-2.5-flash"))
    result = run(pipeline, fake, settings, {"ocr_text": "ACME invoice 1 total 3"})
    assert result.status == "ok"
    assert result.steps["notify"].status == "skipped"
    assert result.output["note"] is None and result.output["needs_review"] is False
    assert {row["step"] for row in cost_rows(db_path)} == {"extract", "audit"}


def test_parallel_branches_run_concurrently(fake, settings):
    fake.latency_s = 0.05
    pipeline = load_pipeline(EXAMPLES / "ticket_triage.yaml")
    run(pipeline, fake, settings, {"ticket": "The app crashes"})
    assert fake.max_in_flight == 2  # classify and extract together; reply after both


def test_step_results_and_record_are_stored(label, fake, settings, db_path):
    import sqlite3

    result = run(label, fake, settings)
    with sqlite3.connect(db_path) as db:
        step = db.execute("SELECT status, model, attempts, output_json FROM step_results").fetchone()
        record = db.execute("SELECT status, output_json FROM records").fetchone()
        run_row = db.execute("SELECT status, records_ok FROM runs").fetchone()
    assert step[:3] == ("ok", PRIMARY, 1) and json.loads(step[3]) == result.steps["label"].output
    assert record == ("ok", json.dumps(result.output))
    assert run_row == ("ok", 1)


def test_reasoning_goes_only_to_models_that_list_it(tmp_path, fake, settings):
    """`reasoning` to a model without it, with provider.require_parameters, is a 404 on OpenRouter."""
    text = LABEL.replace(
        "retries: 2", "retries: 2\n  reasoning: {effort: none}\n  provider: {require_parameters: true}"
    )
    without = load_pipeline(
        write_pipeline(tmp_path, text.replace(PRIMARY, "mistralai/mistral-7b-instruct", 1), "a.yaml")
    )
    assert run(without, fake, settings).status == "ok"
    assert "reasoning" not in fake.chat_bodies()[-1] and fake.chat_bodies()[-1]["temperature"] == 1.0
    assert run(load_pipeline(write_pipeline(tmp_path, text, "b.yaml")), fake, settings).status == "ok"
    assert fake.chat_bodies()[-1]["reasoning"] == {"effort": "none"}
