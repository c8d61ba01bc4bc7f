"""Streaming text steps (DESIGN §8): `pipeline run --stream` and `Pipeline.stream(record)`."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest

from runner import load_pipeline
from runner.chat.failures import TransportFailure
from runner.chat.stream import StreamingClient, read_reply, sse_data
from runner.errors import InputError, TransientError
from runner.fake import FakeOpenRouter, Fault
from runner.fake import server as fake_server_module
from runner.fake.server import FakeServer, mock_transport
from runner.run.streaming import RecordFinished, StepFinished, StepStarted, TextDelta
from runner.settings import Settings

from .conftest import TEST_KEY, cost_rows, invoke, write_pipeline

TEXT_AND_SCHEMA = """
name: streamed
defaults:
  model: google/gemini-2.5-flash-lite
steps:
  label:
    prompt: "Label {{ input.text }}"
    schema:
      type: object
      required: [tag]
      additionalProperties: false
      properties: {tag: {type: string}}
  draft:
    prompt: "Write a short reply about {{ input.text }}"
output: "{{ steps.draft.output }}"
"""

WITH_FALLBACK = """
name: fallback
defaults:
  model: google/gemini-2.5-flash-lite
  fallback_models: [google/gemini-2.5-flash]
steps:
  draft:
    prompt: "Write a short reply about {{ input.text }}"
output: "{{ steps.draft.output }}"
"""


async def _lines(*lines: str):
    for line in lines:
        yield line


async def _collect(pipeline, record, settings, transport, **kwargs) -> list:
    return [event async for event in pipeline.stream(record, settings=settings, transport=transport, **kwargs)]


def _deltas(events: list, step: str | None = None) -> list[TextDelta]:
    return [event for event in events if isinstance(event, TextDelta) and step in (None, event.step_id)]


# SSE as OpenRouter sends it


def test_sse_comments_are_skipped_and_done_ends_the_stream():
    async def read() -> list[str]:
        lines = _lines(
            ": OPENROUTER PROCESSING", "", 'data: {"a": 1}', "", ": OPENROUTER PROCESSING", "", "data: [DONE]", "", "x"
        )
        return [data async for data in sse_data(lines)]

    assert asyncio.run(read()) == ['{"a": 1}']


def test_an_event_of_several_data_lines_is_joined_and_other_fields_ignored():
    async def read() -> list[str]:
        lines = _lines("event: message", "id: 7", 'data: {"a":', "data: 2}", "", "data: [DONE]")
        return [data async for data in sse_data(lines)]

    assert [json.loads(data) for data in asyncio.run(read())] == [{"a": 2}]


def test_a_stream_that_stops_before_done_is_a_broken_one():
    async def read() -> list[str]:
        return [data async for data in sse_data(_lines('data: {"a": 1}', ""))]

    with pytest.raises(TransportFailure, match=r"\[DONE\]"):
        asyncio.run(read())


def test_a_stream_reads_to_the_reply_with_usage_from_the_last_chunk_and_comment_text_nowhere():
    pieces: list[str] = []
    head = '"id": "gen-1", "model": "m", "object": "chat.completion.chunk", "created": 1'
    lines = (
        ": OPENROUTER PROCESSING",
        "",
        f'data: {{{head}, "choices": [{{"index": 0, "delta": {{"content": "Hel"}}, "finish_reason": null}}]}}',
        "",
        ": OPENROUTER PROCESSING",
        "",
        f'data: {{{head}, "choices": [{{"index": 0, "delta": {{"content": "lo"}}, "finish_reason": "stop"}}]}}',
        "",
        f'data: {{{head}, "choices": [], "usage": {{"prompt_tokens": 3, "completion_tokens": 2, "cost": 0.5}}}}',
        "",
        "data: [DONE]",
        "",
    )
    reply = asyncio.run(read_reply(_lines(*lines), pieces.append, time.perf_counter()))
    assert pieces == ["Hel", "lo"]
    assert (reply.content, reply.finish_reason, reply.generation_id) == ("Hello", "stop", "gen-1")
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.cost_usd) == (3, 2, 0.5)


def test_an_event_that_is_not_json_is_a_protocol_failure():
    with pytest.raises(TransportFailure, match="not a JSON object"):
        asyncio.run(read_reply(_lines("data: <html>", "", "data: [DONE]"), print, time.perf_counter()))


# Pipeline.stream


def test_events_come_in_order_and_text_steps_only_stream(fake, settings, tmp_path, db_path):
    pipeline = load_pipeline(write_pipeline(tmp_path, TEXT_AND_SCHEMA))
    events = asyncio.run(_collect(pipeline, {"text": "a broken kettle"}, settings, mock_transport(fake)))

    assert isinstance(events[-1], RecordFinished) and events[-1].result.status == "ok"
    deltas = _deltas(events)
    assert deltas and {delta.step_id for delta in deltas} == {"draft"}  # the schema step is not streamed
    assert len(deltas) > 3  # in pieces, not whole
    assert "".join(delta.text for delta in deltas) == events[-1].result.output
    kinds = [(type(event).__name__, getattr(event, "step_id", None)) for event in events]
    assert kinds.index(("StepStarted", "draft")) < kinds.index(("TextDelta", "draft"))
    assert kinds.index(("TextDelta", "draft")) < kinds.index(("StepFinished", "draft"))
    finished = [event for event in events if isinstance(event, StepFinished)]
    assert {event.step_id for event in finished} == {"label", "draft"}
    assert {event.step_id for event in events if isinstance(event, StepStarted)} == {"label", "draft"}
    # The schema step is asked as usual; the text step with `stream: true`.
    streamed = {body["messages"][-1]["content"].split()[0]: body.get("stream") for body in fake.chat_bodies()}
    assert streamed == {"Label": False, "Write": True}
    # The record's result is the one `run` would give, and it is stored.
    assert events[-1].result.steps["label"].output.keys() == {"tag"}
    assert len(cost_rows(db_path)) == 2


def test_the_first_text_arrives_before_the_reply_is_complete(settings, tmp_path, monkeypatch):
    """Over a real socket: the fake holds back the rest of the reply after its first piece of text
    until the caller has that piece (or 10 s have passed), so a caller that waited for the whole
    reply would make the fake give up waiting."""
    caller_has_text = threading.Event()
    held: list[bool] = []  # per held reply: whether the caller had its text before the rest was sent
    written: list[bytes] = []
    paced = fake_server_module._paced

    async def holding(reply):
        async for event in paced(reply):
            yield event
            written.append(event)
            if not held and _has_text(event):
                held.append(await asyncio.to_thread(caller_has_text.wait, 10))

    monkeypatch.setattr(fake_server_module, "_paced", holding)
    pipeline = load_pipeline(write_pipeline(tmp_path, WITH_FALLBACK))
    with FakeServer(FakeOpenRouter(stream_delay_s=0.01)) as server:
        live = Settings(api_key=TEST_KEY, base_url=server.base_url, db=settings.db, models_cache=False)

        async def consume() -> tuple[list, list[bytes]]:
            events, sent_at_first_text = [], []
            async for event in pipeline.stream({"text": "kettle"}, settings=live):
                if isinstance(event, TextDelta) and not caller_has_text.is_set():
                    sent_at_first_text = list(written)
                    caller_has_text.set()
                events.append(event)
            return events, sent_at_first_text

        events, sent_at_first_text = asyncio.run(consume())
    assert held == [True]
    assert b"data: [DONE]\n\n" not in sent_at_first_text and b"data: [DONE]\n\n" in written
    assert events[-1].result.status == "ok" and len(_deltas(events)) > 3


def _has_text(event: bytes) -> bool:
    if not event.startswith(b"data: {"):
        return False
    choices = json.loads(event[len(b"data: ") :]).get("choices") or [{}]
    return bool((choices[0].get("delta") or {}).get("content"))


def test_a_streamed_reply_makes_one_cost_row_with_the_cost_of_its_last_chunk(fake, settings, tmp_path, db_path):
    pipeline = load_pipeline(write_pipeline(tmp_path, WITH_FALLBACK))
    events = asyncio.run(_collect(pipeline, {"text": "kettle"}, settings, mock_transport(fake)))

    rows = cost_rows(db_path)
    assert len(rows) == 1
    ((generation_id, generation),) = fake.generations.items()
    assert rows[0]["id"] == generation_id
    assert rows[0]["cost_usd"] == pytest.approx(generation["total_cost"]) and rows[0]["cost_usd"] > 0
    assert (rows[0]["cost_source"], rows[0]["outcome"]) == ("usage", "ok")
    assert events[-1].result.cost_usd == pytest.approx(rows[0]["cost_usd"])
    assert rows[0]["completion_tokens"] == generation["tokens_completion"]


def test_a_streamed_reply_without_a_cost_is_looked_up(fake, settings, tmp_path, db_path):
    fake.enqueue(Fault("no_cost"))
    pipeline = load_pipeline(write_pipeline(tmp_path, WITH_FALLBACK))
    asyncio.run(_collect(pipeline, {"text": "kettle"}, settings, mock_transport(fake)))

    (row,) = cost_rows(db_path)
    (generation,) = fake.generations.values()
    assert row["cost_source"] == "generation"
    assert row["cost_usd"] == pytest.approx(generation["total_cost"])
    assert any(seen.path == "generation" for seen in fake.history)


def test_an_error_chunk_mid_stream_fails_the_reply_and_the_fallback_answers(fake, settings, tmp_path, db_path):
    fake.enqueue(Fault("stream_error", model="google/gemini-2.5-flash-lite", message="Provider disconnected"))
    pipeline = load_pipeline(write_pipeline(tmp_path, WITH_FALLBACK))
    events = asyncio.run(_collect(pipeline, {"text": "a broken kettle"}, settings, mock_transport(fake)))

    result = events[-1].result
    assert result.status == "ok" and result.steps["draft"].model == "google/gemini-2.5-flash"
    rows = cost_rows(db_path)
    assert [(row["requested_model"], row["outcome"]) for row in rows] == [
        ("google/gemini-2.5-flash-lite", "error"),  # billed for what it sent before the error
        ("google/gemini-2.5-flash", "ok"),
    ]
    # The broken reply's text came first, then the fallback's whole reply.
    text = "".join(delta.text for delta in _deltas(events))
    assert text.endswith(result.output) and len(text) > len(result.output)


def test_an_error_chunk_mid_stream_without_a_fallback_fails_the_step(fake, settings, tmp_path, db_path):
    fake.enqueue(Fault("stream_error"))
    spec = WITH_FALLBACK.replace("  fallback_models: [google/gemini-2.5-flash]\n", "")
    pipeline = load_pipeline(write_pipeline(tmp_path, spec))
    events = asyncio.run(_collect(pipeline, {"text": "kettle"}, settings, mock_transport(fake)))

    result = events[-1].result
    assert result.status == "failed"
    assert (result.error.step, result.error.kind, result.error.attempts) == ("draft", "error", 1)
    assert fake.chat_requests == 1  # not asked again: an error inside a 200 is not a transport failure
    (row,) = cost_rows(db_path)
    assert row["outcome"] == "error" and row["cost_usd"] > 0


def test_a_cached_reply_in_a_streamed_run_comes_whole(fake, settings, tmp_path):
    pipeline = load_pipeline(write_pipeline(tmp_path, TEXT_AND_SCHEMA))
    first = asyncio.run(pipeline.run({"text": "kettle"}, settings=settings, transport=mock_transport(fake)))
    asked = fake.chat_requests

    events = asyncio.run(_collect(pipeline, {"text": "kettle"}, settings, mock_transport(fake)))

    assert fake.chat_requests == asked  # both replies from the cache of the unstreamed run
    assert [(delta.step_id, delta.text) for delta in _deltas(events)] == [("draft", first.output)]
    assert events[-1].result.output == first.output


def test_an_invalid_record_raises_before_any_event(fake, settings, tmp_path):
    spec = WITH_FALLBACK.replace("steps:", "input: {type: object, required: [text]}\nsteps:")
    pipeline = load_pipeline(write_pipeline(tmp_path, spec))

    with pytest.raises(InputError, match="text"):
        asyncio.run(_collect(pipeline, {"other": 1}, settings, mock_transport(fake)))
    assert fake.chat_requests == 0


def test_leaving_the_stream_early_cancels_the_run(settings, tmp_path):
    fake = FakeOpenRouter(stream_delay_s=0.05)
    pipeline = load_pipeline(write_pipeline(tmp_path, WITH_FALLBACK))

    async def first_text() -> TextDelta:
        events = pipeline.stream({"text": "a long answer please"}, settings=settings, transport=mock_transport(fake))
        async for event in events:
            if isinstance(event, TextDelta):
                await events.aclose()
                return event
        raise AssertionError("no text came")

    assert asyncio.run(first_text()).step_id == "draft"


# The client: retries only before the first text


def _stream_client(handler) -> StreamingClient:
    return StreamingClient(
        api_key=TEST_KEY,
        base_url="https://openrouter.test/api/v1",
        transport=httpx.MockTransport(handler),
        sleep=lambda _: asyncio.sleep(0),
    )


CHUNK = b'data: {"id": "gen-1", "model": "m", "choices": [{"index": 0, "delta": {"content": "Hi "}}]}\n\n'


def test_a_stream_that_breaks_after_its_first_text_is_not_asked_again():
    requests: list[httpx.Request] = []

    async def broken():
        yield CHUNK
        raise httpx.ReadError("connection reset")

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, content=broken(), headers={"Content-Type": "text/event-stream"})

    pieces: list[str] = []

    async def ask() -> None:
        async with _stream_client(handler) as client:
            await client.chat_stream({"model": "m", "stream": True}, timeout_s=5, retries=3, on_text=pieces.append)

    with pytest.raises(TransientError, match="after its first text"):
        asyncio.run(ask())
    assert len(requests) == 1 and pieces == ["Hi "]


def test_a_stream_that_fails_before_any_text_is_retried():
    attempts: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        if len(attempts) == 1:
            return httpx.Response(429, json={"error": {"code": 429, "message": "Rate limit exceeded"}})
        return httpx.Response(200, content=CHUNK + b"data: [DONE]\n\n", headers={"Content-Type": "text/event-stream"})

    async def ask():
        async with _stream_client(handler) as client:
            return await client.chat_stream({"model": "m", "stream": True}, timeout_s=5, retries=3, on_text=print)

    assert asyncio.run(ask()).content == "Hi "
    assert len(attempts) == 2


# The command line


def test_cli_stream_writes_the_text_to_stderr_and_the_record_to_stdout(capsys, monkeypatch, tmp_path, fake_server):
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    path = write_pipeline(tmp_path, TEXT_AND_SCHEMA)

    outcome = invoke(capsys, monkeypatch, "run", str(path), "--input", "text=kettle", "--stream")

    assert outcome.code == 0, outcome.err
    output = json.loads(outcome.out)
    assert f"[draft] {output}\n" in outcome.err
    assert "[label]" not in outcome.err  # a schema step is not streamed
    streamed = [body.get("stream") for body in fake_server.fake.chat_bodies()]
    assert sorted(streamed) == [False, True]


def test_cli_stream_needs_one_record(capsys, monkeypatch, tmp_path):
    path = write_pipeline(tmp_path, TEXT_AND_SCHEMA)
    data = tmp_path / "in.jsonl"
    data.write_text('{"text": "a"}\n', encoding="utf-8")

    outcome = invoke(capsys, monkeypatch, "run", str(path), "--inputs", str(data), "--stream", "--mock")

    assert outcome.code == 2 and "--stream goes with --input" in outcome.err


# The fake streams as OpenRouter does


def _fake_events(fake: FakeOpenRouter, body: bytes) -> tuple[str, ...]:
    response = asyncio.run(fake.handle("POST", "/api/v1/chat/completions", {}, {"authorization": "Bearer k"}, body))
    assert response.status == 200 and response.body is None
    return response.events


def test_the_fakes_chunks_have_openrouters_shape(fake):
    body = json.dumps(
        {
            "model": "google/gemini-2.5-flash-lite",
            "stream": True,
            "messages": [{"role": "user", "content": "Say hello"}],
        }
    )
    events = _fake_events(fake, body.encode())

    assert events[0] == ": OPENROUTER PROCESSING\n\n" and events[-1] == "data: [DONE]\n\n"
    chunks = [json.loads(event[len("data: ") :]) for event in events if event.startswith("data: {")]
    for chunk in chunks:  # ChatStreamChunk's required fields
        assert {"id", "choices", "created", "model", "object"} <= chunk.keys()
        assert chunk["object"] == "chat.completion.chunk"
        for choice in chunk["choices"]:  # ChatStreamChoice's
            assert {"delta", "finish_reason", "index"} <= choice.keys()
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["cost"] > 0
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in chunk for chunk in chunks[:-1])


def test_the_fakes_mid_stream_error_is_an_error_chunk_without_done(fake):
    fake.enqueue(Fault("stream_error", message="Provider disconnected"))
    body = json.dumps(
        {
            "model": "google/gemini-2.5-flash-lite",
            "stream": True,
            "messages": [{"role": "user", "content": "Say hello to everyone here"}],
        }
    )
    events = _fake_events(fake, body.encode())

    last = json.loads(events[-1][len("data: ") :])
    assert last["error"]["message"] == "Provider disconnected" and "code" in last["error"]
    assert last["choices"][0]["finish_reason"] == "error" and last["choices"][0]["delta"] == {"content": ""}
    assert "data: [DONE]\n\n" not in events
    text = "".join(
        json.loads(event[6:])["choices"][0]["delta"].get("content") or ""
        for event in events
        if event.startswith("data: {")
    )
    assert text  # some text came before the error
