"""Where a billed reply's cost comes from (DESIGN.md §4): usage.cost, GET /generation, or an estimate.

Replies are built by a MockTransport handler in OpenRouter's real body shapes (openapi.yaml:
ChatResponse, GenerationResponse), since the point is replies the fake does not send.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from itertools import count

import httpx
import pytest

from runner.api import load_pipeline
from runner.chat.catalog import SNAPSHOT_PATH
from runner.chat.reply import Reply, Usage
from runner.errors import BudgetExceeded
from runner.settings import RunOptions

from .conftest import cost_rows, invoke, write_pipeline

MODEL = "google/gemini-2.5-flash-lite"
FALLBACK = "google/gemini-2.5-flash"
PRICES = {entry["id"]: entry["pricing"] for entry in json.loads(SNAPSHOT_PATH.read_text())["data"]}

LABEL = f"""
name: label
defaults:
  model: {MODEL}
  fallback_models: [{FALLBACK}]
  retries: 0
  max_tokens: 200
steps:
  label:
    prompt: "Label: {{{{ input.text }}}}"
    schema:
      type: object
      additionalProperties: false
      required: [category]
      properties:
        category: {{type: string, enum: [billing, bug]}}
"""


def usage_body(cost: float | None = 0.00002, **extra) -> dict:
    """`usage` as OpenRouter sends it; cost=None leaves `cost` out, as 10 of 53 recorded real replies did."""
    usage = {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "image_tokens": 0},
        "is_byok": False,
    }
    if cost is not None:
        usage["cost"] = cost
        usage["cost_details"] = {"upstream_inference_cost": None}
    usage.update(extra)
    return usage


def chat_body(generation_id: str, model: str, *, content='{"category": "bug"}', usage=None, message=None) -> dict:
    return {
        "id": generation_id,
        "provider": "Google AI Studio",
        "model": model,
        "object": "chat.completion",
        "created": 1764500000,
        "choices": [
            {
                "logprobs": None,
                "finish_reason": "stop",
                "native_finish_reason": "STOP",
                "index": 0,
                "message": message or {"role": "assistant", "content": content, "refusal": None, "reasoning": None},
            }
        ],
        "usage": usage if usage is not None else usage_body(),
    }


def generation_body(generation_id: str, total_cost: float) -> dict:
    return {
        "data": {
            "id": generation_id,
            "upstream_id": "chatcmpl-1",
            "total_cost": total_cost,
            "cache_discount": None,
            "upstream_inference_cost": None,
            "created_at": "2026-12-01T09:00:00.000000+00:00",
            "model": MODEL,
            "app_id": None,
            "streamed": False,
            "cancelled": False,
            "provider_name": "Google AI Studio",
            "latency": 812,
            "moderation_latency": None,
            "generation_time": 640,
            "finish_reason": "stop",
            "native_finish_reason": "STOP",
            "service_tier": None,
            "tokens_prompt": 1200,
            "tokens_completion": 300,
            "native_tokens_prompt": 1210,
            "native_tokens_completion": 305,
            "native_tokens_completion_images": 0,
            "native_tokens_reasoning": 0,
            "native_tokens_cached": 0,
            "num_media_prompt": None,
            "num_input_audio_prompt": None,
            "num_media_completion": None,
            "num_search_results": None,
            "num_fetches": None,
            "is_byok": False,
            "provider_responses": [{"provider_name": "Google AI Studio", "status": 200}],
        }
    }


class OpenRouterScript:
    """A scripted OpenRouter: `chats` are the chat replies in order (a body per call, built from its
    generation id and model); `/generation` answers 404 `generation_404s` times before the record."""

    def __init__(self, chats, *, generation_cost: float | None = None, generation_404s: int = 0) -> None:
        self.chats = list(chats)
        self.generation_cost = generation_cost
        self.generation_404s = generation_404s
        self.ids = count(1)
        self.seen: list[tuple[str, str]] = []
        self.chat_bodies: list[dict] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.rsplit("/api/v1/", 1)[-1]
        self.seen.append((request.method, path))
        if path == "models":
            return httpx.Response(200, json=json.loads(SNAPSHOT_PATH.read_text()))
        if path == "generation":
            if self.generation_cost is None or self.generation_404s > 0:
                self.generation_404s -= 1
                return httpx.Response(404, json={"error": {"code": 404, "message": "Generation not found"}})
            return httpx.Response(200, json=generation_body(request.url.params["id"], self.generation_cost))
        body = json.loads(request.content)
        self.chat_bodies.append(body)
        make = self.chats.pop(0) if len(self.chats) > 1 else self.chats[0]
        return httpx.Response(200, json=make(f"gen-1764500000-test{next(self.ids):04d}", body["model"]))

    def calls(self, path: str) -> int:
        return sum(1 for _, seen in self.seen if seen == path)


def run_records(pipeline, script, settings, records=1, **options):
    async def go():
        settings_ = dataclasses.replace(settings, backoff_base_s=0.0, backoff_max_s=0.0, generation_wait_s=0.01)
        async with pipeline.session(
            settings_, transport=httpx.MockTransport(script.handler), options=RunOptions(concurrency=1, **options)
        ) as session:
            results = [result async for result in session.run_many([{"text": f"t{n}"} for n in range(records)])]
            return results, session

    return asyncio.run(go())


@pytest.fixture
def label(tmp_path):
    return load_pipeline(write_pipeline(tmp_path, LABEL))


def without_cost(generation_id, model):
    return chat_body(generation_id, model, usage=usage_body(cost=None))


def test_usage_without_cost_says_missing_not_zero():
    reply = Reply.from_body(chat_body("gen-1", MODEL, usage=usage_body(cost=None)), latency_ms=5)
    assert reply.billed and reply.usage.cost_usd is None
    assert Usage.from_body(usage_body(cost=0)).cost_usd == 0.0  # a real zero (a free model) stays zero


def test_a_missing_cost_is_looked_up_and_the_generation_is_stored(label, settings, db_path):
    script = OpenRouterScript([without_cost], generation_cost=0.00042, generation_404s=2)  # still indexing, twice
    results, _ = run_records(label, script, settings)
    assert results[0].status == "ok"
    assert script.calls("generation") == 3
    [row] = cost_rows(db_path)
    assert (row["cost_usd"], row["cost_source"]) == (0.00042, "generation")
    with sqlite3.connect(db_path) as db:
        db.row_factory = sqlite3.Row
        [generation] = [dict(found) for found in db.execute("SELECT * FROM generations")]
    assert generation["id"] == row["id"] and generation["total_cost_usd"] == 0.00042
    assert (generation["latency_ms"], generation["generation_time_ms"]) == (812, 640)
    assert generation["provider_name"] == "Google AI Studio" and generation["native_tokens_prompt"] == 1210
    assert json.loads(generation["provider_responses"]) == [{"provider_name": "Google AI Studio", "status": 200}]
    assert generation["native_finish_reason"] == "STOP" and generation["fetched_at"]


def test_without_a_generation_record_the_cost_is_a_catalogue_estimate_with_a_warning(label, settings, db_path, caplog):
    script = OpenRouterScript([without_cost])  # /generation keeps answering 404
    results, session = run_records(label, script, settings)
    assert results[0].status == "ok" and script.calls("generation") >= 2  # retried, then gave up
    pricing = PRICES[MODEL]
    expected = 1200 * float(pricing["prompt"]) + 300 * float(pricing["completion"])
    [row] = cost_rows(db_path)
    assert row["cost_source"] == "estimate" and row["cost_usd"] == pytest.approx(expected) and expected > 0
    assert session.totals.cost_usd == pytest.approx(expected)
    assert any("estimate" in record.getMessage() and record.levelname == "WARNING" for record in caplog.records)


def test_the_budget_settles_at_the_looked_up_cost_and_stops_the_run(label, settings, db_path):
    """The issue: 8 calls without usage.cost ran under a $0.002 cap; each cost $0.001 here."""
    script = OpenRouterScript([without_cost], generation_cost=0.001)
    with pytest.raises(BudgetExceeded) as stopped:
        run_records(label, script, settings, records=6, max_cost_usd=0.002)
    assert (stopped.value.cap_usd, stopped.value.spent_usd) == (0.002, pytest.approx(0.002))
    assert "--max-cost" not in str(stopped.value)  # the Python API's words name no flag
    assert len(script.chat_bodies) == 2  # a third call could pass the cap
    assert [row["cost_usd"] for row in cost_rows(db_path)] == [0.001, 0.001]


def test_byok_fees_upstream_spend_and_cache_writes_are_recorded(label, settings, db_path, capsys, monkeypatch):
    usage = usage_body(
        cost=0.00001,
        is_byok=True,
        cost_details={"upstream_inference_cost": 0.0031},
        prompt_tokens_details={"cached_tokens": 0, "cache_write_tokens": 1024},
    )
    script = OpenRouterScript([lambda gid, model: chat_body(gid, model, usage=usage)])
    run_records(label, script, settings)
    [row] = cost_rows(db_path)
    assert (row["cost_usd"], row["is_byok"], row["upstream_cost_usd"]) == (0.00001, 1, 0.0031)
    assert (row["cache_write_tokens"], row["native_finish_reason"], row["cost_source"]) == (1024, "STOP", "usage")
    shown = invoke(
        capsys, monkeypatch, "costs", "--by", "model", "--upstream", "--format", "json", "--db", str(db_path)
    )
    [summary] = json.loads(shown.out)
    assert (summary["cost_usd"], summary["byok_upstream_usd"], summary["byok_calls"]) == (0.00001, 0.0031, 1)
    table = invoke(capsys, monkeypatch, "costs", "--by", "model", "--upstream", "--db", str(db_path))
    assert "byok_upstream_usd" in table.out and "billed by providers (BYOK): $0.003100" in table.out


def tool_call_only(generation_id, model):
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}],
    }
    return chat_body(generation_id, model, message=message)


def no_choices(generation_id, model):
    body = chat_body(generation_id, model)
    body["choices"] = []
    return body


def good(generation_id, model):
    return chat_body(generation_id, model)


@pytest.mark.parametrize(
    "bad",
    [
        lambda gid, model: chat_body(gid, model, content=None),
        lambda gid, model: chat_body(gid, model, content="  \n "),
        no_choices,
        tool_call_only,
    ],
    ids=["content-none", "whitespace", "no-choices", "tool-calls-only"],
)
def test_an_empty_reply_in_a_schema_step_falls_back_instead_of_being_re_asked(label, settings, db_path, bad):
    script = OpenRouterScript([bad, good])
    results, _ = run_records(label, script, settings)
    assert results[0].status == "ok"
    assert [body["model"] for body in script.chat_bodies] == [MODEL, FALLBACK]
    assert all(message["role"] != "assistant" for body in script.chat_bodies for message in body["messages"])
    assert [(row["attempt"], row["requested_model"], row["outcome"]) for row in cost_rows(db_path)] == [
        (1, MODEL, "error"),
        (2, FALLBACK, "ok"),
    ]
