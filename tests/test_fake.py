"""The fake OpenRouter answers with the shapes real traffic has, each one checked against openapi.yaml."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from jsonschema import Draft202012Validator

from runner.fake import FakeOpenRouter, Fault
from runner.fake.replies import DATED_IDS
from runner.fake.server import mock_transport

from .conftest import ROOT, TEST_KEY

LITE = "google/gemini-2.5-flash-lite"
SONNET = "anthropic/claude-sonnet-4.5"
RESPONSES = json.loads((Path(__file__).parent / "data" / "openrouter_responses.schema.json").read_text())


def openapi(name: str) -> Draft202012Validator:
    """A validator for one of openapi.yaml's response bodies (tests/data/extract_openrouter_schema.py)."""
    return Draft202012Validator({**RESPONSES, "$ref": f"#/$defs/{name}"})


def assert_shape(name: str, body: dict) -> None:
    errors = [f"{list(error.absolute_path)}: {error.message}" for error in openapi(name).iter_errors(body)]
    assert not errors, f"not a {name}: {errors}"


def body(model: str = LITE, text: str = "Summarise the refund policy", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 200, **extra}


async def _send(fake: FakeOpenRouter, requests: list[tuple[str, str, dict | None]]) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {TEST_KEY}"}
    async with httpx.AsyncClient(
        transport=mock_transport(fake), base_url="https://openrouter.test/api/v1", headers=headers
    ) as client:
        return [await client.request(method, path, json=payload) for method, path, payload in requests]


def chat(fake: FakeOpenRouter, payload: dict | None = None) -> httpx.Response:
    return asyncio.run(_send(fake, [("POST", "/chat/completions", payload or body())]))[0]


def lookups(fake: FakeOpenRouter, generation_id: str, times: int) -> list[httpx.Response]:
    return asyncio.run(_send(fake, [("GET", f"/generation?id={generation_id}", None)] * times))


def completion(fake: FakeOpenRouter, payload: dict | None = None) -> dict:
    response = chat(fake, payload)
    assert response.status_code == 200, response.text
    reply = response.json()
    assert_shape("ChatResult", reply)
    return reply


def generation(fake: FakeOpenRouter, generation_id: str) -> dict:
    found = lookups(fake, generation_id, fake.generation_not_found_lookups + 1)[-1]
    assert found.status_code == 200, found.text
    assert_shape("GenerationResponse", found.json())
    return found.json()["data"]


# Generation ids


def test_two_fakes_in_the_same_second_never_share_a_generation_id():
    first, second = FakeOpenRouter(), FakeOpenRouter()
    ids = [completion(fake)["id"] for fake in (first, second) for _ in range(20)]
    assert len(set(ids)) == 40 and all(generation_id.startswith("gen-") for generation_id in ids)


def test_two_processes_never_share_a_generation_id():
    script = (
        "import asyncio, json, httpx\n"
        "from runner.fake import FakeOpenRouter\n"
        "from runner.fake.server import mock_transport\n"
        "async def main():\n"
        "    async with httpx.AsyncClient(transport=mock_transport(FakeOpenRouter())) as client:\n"
        "        body = {'model': 'google/gemini-2.5-flash-lite', 'messages': [{'role': 'user', 'content': 'hi'}]}\n"
        "        for _ in range(30):\n"
        "            reply = await client.post('http://fake/api/v1/chat/completions', json=body,\n"
        "                                      headers={'Authorization': 'Bearer k'})\n"
        "            print(reply.json()['id'])\n"
        "asyncio.run(main())\n"
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=60)[0].split() for worker in workers]
    assert [len(output) for output in outputs] == [30, 30]
    assert not set(outputs[0]) & set(outputs[1])


# Replies


def test_a_plain_reply_is_a_chat_result_and_says_it_is_a_mock():
    reply = completion(FakeOpenRouter())
    assert reply["choices"][0]["message"]["content"].startswith(f"[mock reply from {LITE}]")
    assert reply["usage"]["cost"] == reply["usage"]["cost_details"]["upstream_inference_cost"] > 0


@pytest.mark.parametrize(
    ("model", "max_tokens", "finish", "native"),
    [
        (LITE, 200, "stop", "STOP"),
        (LITE, 3, "length", "MAX_TOKENS"),
        (SONNET, 200, "stop", "end_turn"),
        (SONNET, 3, "length", "max_tokens"),
        ("openai/gpt-5-mini", 200, "stop", "completed"),
        ("openai/gpt-4o-mini", 200, "stop", "stop"),
        ("meta-llama/llama-3.1-8b-instruct", 3, "length", "length"),
    ],
)
def test_native_finish_reason_is_the_providers_own_word(model, max_tokens, finish, native):
    fake = FakeOpenRouter()
    reply = completion(fake, body(model, "word " * 40, max_tokens=max_tokens))
    choice = reply["choices"][0]
    assert (choice["finish_reason"], choice["native_finish_reason"]) == (finish, native)
    assert generation(fake, reply["id"])["native_finish_reason"] == native


def test_a_scripted_finish_can_carry_its_own_native_reason():
    fake = FakeOpenRouter()
    fake.enqueue(Fault("finish", finish_reason="content_filter", native_finish_reason="PROHIBITED_CONTENT"))
    choice = completion(fake)["choices"][0]
    assert (choice["finish_reason"], choice["native_finish_reason"], choice["message"]["content"]) == (
        "content_filter",
        "PROHIBITED_CONTENT",
        None,
    )


def test_no_cost_reply_has_tokens_and_the_generation_has_the_total_cost():
    fake = FakeOpenRouter()
    fake.enqueue(Fault("no_cost"))
    reply = completion(fake)
    assert "cost" not in reply["usage"] and reply["usage"]["total_tokens"] > 0
    record = generation(fake, reply["id"])
    assert record["total_cost"] > 0 and record["total_cost"] == fake.total_cost


def test_byok_reply_charges_a_small_fee_and_reports_the_providers_price():
    fake = FakeOpenRouter()
    fake.enqueue(Fault("byok"))
    usage = completion(fake)["usage"]
    upstream = usage["cost_details"]["upstream_inference_cost"]
    assert usage["is_byok"] is True and 0 < usage["cost"] < upstream
    assert usage["cost"] == pytest.approx(upstream * 0.05)
    fake.enqueue(Fault("byok", fee_usd=0.0001))
    reply = completion(fake)
    assert reply["usage"]["cost"] == 0.0001
    record = generation(fake, reply["id"])
    assert record["is_byok"] is True and record["total_cost"] == 0.0001 and record["upstream_inference_cost"] > 0


def test_plugin_fee_puts_the_cost_above_the_upstream_cost():
    fake = FakeOpenRouter()
    fake.enqueue(Fault("plugin_fee", fee_usd=0.02))
    usage = completion(fake)["usage"]
    assert usage["cost"] == pytest.approx(usage["cost_details"]["upstream_inference_cost"] + 0.02)


def test_served_model_differs_from_the_requested_one_when_scripted():
    fake = FakeOpenRouter()
    fake.enqueue(Fault("served_model"))
    reply = completion(fake, body(SONNET))
    assert reply["model"] == "anthropic/claude-4.5-sonnet-20250929"
    assert generation(fake, reply["id"])["model"] == "anthropic/claude-4.5-sonnet-20250929"
    assert completion(fake, body(SONNET))["model"] == SONNET  # one reply only
    fake.enqueue(Fault("served_model", served_model="google/gemini-2.5-flash-lite-001"))
    assert completion(fake)["model"] == "google/gemini-2.5-flash-lite-001"


def test_served_models_switch_renames_every_reply():
    fake = FakeOpenRouter(served_models=DATED_IDS)
    assert [completion(fake, body(SONNET))["model"] for _ in range(2)] == [DATED_IDS[SONNET]] * 2
    assert completion(fake)["model"] == LITE


def test_choice_error_is_a_billed_200_whose_choice_carries_the_error():
    fake = FakeOpenRouter()
    fake.enqueue(Fault("choice_error", status=429, message="Rate limited by upstream"))
    reply = completion(fake)
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "error" and choice["error"]["code"] == 429
    assert choice["error"]["message"] == "Rate limited by upstream" and choice["error"]["metadata"]["provider_name"]
    assert reply["usage"]["cost"] > 0 and fake.billed_calls == 1


def test_empty_choices_are_still_billed():
    fake = FakeOpenRouter()
    fake.enqueue(Fault("empty_choices"))
    reply = completion(fake)
    assert reply["choices"] == [] and reply["usage"]["cost"] > 0
    assert generation(fake, reply["id"])["total_cost"] == reply["usage"]["cost"]


def test_tool_calls_only_reply_names_a_requested_tool_with_valid_arguments():
    parameters = {
        "type": "object",
        "additionalProperties": False,
        "required": ["order_id", "days"],
        "properties": {
            "order_id": {"type": "string", "pattern": "^ORD-[0-9]{4}$"},
            "days": {"type": "integer", "minimum": 1},
        },
    }
    tools = [
        {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "find_order", "parameters": parameters}},
    ]
    fake = FakeOpenRouter()
    fake.enqueue(Fault("tool_calls", tool_name="find_order"))
    choice = completion(fake, body(SONNET, tools=tools))["choices"][0]
    assert choice["message"]["content"] is None
    assert (choice["finish_reason"], choice["native_finish_reason"]) == ("tool_calls", "tool_use")
    [call] = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "find_order"
    assert Draft202012Validator(parameters).is_valid(json.loads(call["function"]["arguments"]))


def test_a_schema_the_fake_cannot_satisfy_is_a_400_that_says_why():
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": "(?=x)y"}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": schema}}
    fake = FakeOpenRouter()
    response = chat(fake, body(response_format=response_format))
    assert response.status_code == 400 and "/code" in response.json()["error"]["message"]
    assert fake.billed_calls == 0


# Errors


@pytest.mark.parametrize(
    ("status", "shape"),
    [(429, "TooManyRequestsResponse"), (502, "BadGatewayResponse"), (503, "ServiceUnavailableResponse")],
)
def test_upstream_errors_carry_the_providers_raw_text_and_name(status, shape):
    fake = FakeOpenRouter()
    fake.enqueue(Fault("upstream_error", status=status, retry_after="1"))
    response = chat(fake, body(SONNET))
    assert response.status_code == status and response.headers["Retry-After"] == "1"
    assert_shape(shape, response.json())
    error = response.json()["error"]
    assert error["code"] == status and error["metadata"]["provider_name"] == "Anthropic" and error["metadata"]["raw"]


def test_an_upstream_rate_limit_falls_through_to_the_next_model():
    fake = FakeOpenRouter()
    fake.enqueue(Fault("upstream_error", model=LITE))
    assert completion(fake, body(models=[LITE, SONNET]))["model"] == SONNET


def test_moderation_refusal_names_the_reasons_and_the_flagged_input():
    fake = FakeOpenRouter()
    fake.enqueue(Fault("moderation", reasons=("harassment", "violence")))
    response = chat(fake, body(text="something nasty " * 20))
    assert response.status_code == 403
    assert_shape("ForbiddenResponse", response.json())
    metadata = response.json()["error"]["metadata"]
    assert metadata["reasons"] == ["harassment", "violence"]
    assert metadata["flagged_input"].startswith("something nasty") and len(metadata["flagged_input"]) <= 103
    assert fake.billed_calls == 0


def test_unknown_fault_kinds_are_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="no_cost"):
        Fault("no_costs")


# /generation


def test_generation_is_not_found_on_the_first_lookup_then_has_every_field():
    fake = FakeOpenRouter()
    reply = completion(fake, body(SONNET, user="user-7"))
    missing, found = lookups(fake, reply["id"], 2)
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "Generation not found"
    assert_shape("NotFoundResponse", missing.json())
    assert found.status_code == 200
    assert_shape("GenerationResponse", found.json())
    record = found.json()["data"]
    usage = reply["usage"]
    assert record["id"] == reply["id"] and record["model"] == SONNET and record["provider_name"] == "Anthropic"
    assert record["total_cost"] == usage["cost"] and record["upstream_inference_cost"] == usage["cost"]
    assert (record["tokens_prompt"], record["native_tokens_prompt"]) == (usage["prompt_tokens"],) * 2
    assert record["native_tokens_completion"] == usage["completion_tokens"]
    assert record["native_tokens_reasoning"] == usage["completion_tokens_details"]["reasoning_tokens"] > 0
    assert (record["finish_reason"], record["native_finish_reason"], record["external_user"]) == (
        "stop",
        "end_turn",
        "user-7",
    )
    assert record["provider_responses"][0]["status"] == 200 and record["created_at"].endswith("+00:00")


def test_generation_lookup_delay_is_configurable():
    immediate = FakeOpenRouter(generation_not_found_lookups=0)
    assert lookups(immediate, completion(immediate)["id"], 1)[0].status_code == 200
    slow = FakeOpenRouter(generation_not_found_lookups=3)
    assert [r.status_code for r in lookups(slow, completion(slow)["id"], 4)] == [404, 404, 404, 200]
    indexing = FakeOpenRouter(generation_not_found_lookups=0, generation_not_found_s=3600)
    assert {r.status_code for r in lookups(indexing, completion(indexing)["id"], 5)} == {404}


def test_generations_never_found_switch():
    fake = FakeOpenRouter(generations_never_found=True)
    assert {r.status_code for r in lookups(fake, completion(fake)["id"], 5)} == {404}
