"""OpenTelemetry traces (DESIGN §10): spans per run, record and step, a `chat {model}` client span per HTTP
attempt with the GenAI conventions' attributes; prompt text only when asked for; OTLP/HTTP to a collector."""

from __future__ import annotations

import asyncio
import sys
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("opentelemetry.sdk.trace", reason="the `otel` extra is not installed")

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from runner import load_pipeline
from runner.fake import Fault
from runner.fake.server import mock_transport
from runner.report.tracing import RunTracer
from runner.settings import RunOptions

from .conftest import TEST_KEY, invoke, write_pipeline

TWO_STEPS = """
name: traced
defaults:
  model: google/gemini-2.5-flash-lite
  temperature: 0.3
  max_tokens: 300
  retries: 2
steps:
  label:
    module: triage
    prompt: "Label this ticket: {{ input.ticket }}"
    schema:
      type: object
      required: [tag]
      additionalProperties: false
      properties: {tag: {type: string}}
  draft:
    module: replies
    prompt: "Draft a reply to {{ input.ticket }} tagged {{ steps.label.output.tag }}"
output: "{{ steps.draft.output }}"
"""

SECRET_TICKET = "my parrot ate the invoice 7731"


def _traced_run(tmp_path, settings, fake, *, content: bool = False, record=None):
    pipeline = load_pipeline(write_pipeline(tmp_path, TWO_STEPS))
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = RunTracer(provider.get_tracer("test"), pipeline.spec, content=content, base_url=settings.base_url)

    async def run():
        session = pipeline.session(settings, transport=mock_transport(fake), hooks=tracer)
        tracer.start_run(session.run_id)
        async with session:
            result = await session.run(record or {"ticket": SECRET_TICKET}, key="r1")
        tracer.end_run(
            records_ok=session.totals.records_ok,
            records_failed=session.totals.records_failed,
            cost_usd=session.totals.cost_usd,
        )
        return result

    result = asyncio.run(run())
    return result, exporter.get_finished_spans()


def _one(spans, name):
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, [span.name for span in spans]
    return found[0]


def _all_values(spans) -> str:
    return " ".join(str(value) for span in spans for value in span.attributes.values())


def test_spans_nest_run_record_step_chat_with_genai_attributes(tmp_path, settings, fake):
    result, spans = _traced_run(tmp_path, settings, fake)
    assert result.status == "ok"
    run = _one(spans, "run traced")
    record = _one(spans, "record r1")
    label, draft = _one(spans, "step label"), _one(spans, "step draft")
    chats = [span for span in spans if span.name == "chat google/gemini-2.5-flash-lite"]
    assert len(chats) == 2
    assert run.parent is None and record.parent.span_id == run.context.span_id
    assert label.parent.span_id == draft.parent.span_id == record.context.span_id
    assert {chat.parent.span_id for chat in chats} == {label.context.span_id, draft.context.span_id}
    assert len({span.context.trace_id for span in spans}) == 1

    chat = next(chat for chat in chats if chat.parent.span_id == label.context.span_id)
    attributes = chat.attributes
    assert chat.kind == SpanKind.CLIENT
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openrouter"
    assert attributes["gen_ai.request.model"] == "google/gemini-2.5-flash-lite"
    assert attributes["gen_ai.response.model"].startswith("google/gemini-2.5-flash-lite")
    assert attributes["gen_ai.response.id"].startswith("gen-")
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["gen_ai.usage.input_tokens"] > 0 and attributes["gen_ai.usage.output_tokens"] > 0
    assert attributes["gen_ai.request.temperature"] == 0.3 and attributes["gen_ai.request.max_tokens"] == 300
    assert attributes["gen_ai.output.type"] == "json"
    assert attributes["pipeline.step"] == "label" and attributes["pipeline.module"] == "triage"
    assert attributes["pipeline.cost_usd"] > 0
    assert attributes["server.address"] == "openrouter.test"
    assert draft.attributes["pipeline.module"] == "replies"
    assert label.attributes["pipeline.cost_usd"] == pytest.approx(result.steps["label"].cost_usd)
    assert run.attributes["pipeline.cost_usd"] == pytest.approx(result.cost_usd)
    assert all(span.status.status_code != StatusCode.ERROR for span in spans)

    values = _all_values(spans)
    assert "gen_ai.input.messages" not in attributes and "gen_ai.output.messages" not in attributes
    assert SECRET_TICKET not in values  # no prompt text without the opt-in
    assert TEST_KEY not in values


def test_prompt_and_reply_text_only_when_asked_for(tmp_path, settings, fake):
    result, spans = _traced_run(tmp_path, settings, fake, content=True)
    chat = next(span for span in spans if span.name.startswith("chat ") and span.attributes["pipeline.step"] == "draft")
    assert SECRET_TICKET in chat.attributes["gen_ai.input.messages"]
    assert '"role": "user"' in chat.attributes["gen_ai.input.messages"]
    assert result.output in chat.attributes["gen_ai.output.messages"]
    assert TEST_KEY not in _all_values(spans)


def test_a_failed_step_and_its_record_have_error_status(tmp_path, settings, fake):
    fake.enqueue(Fault("finish", finish_reason="content_filter", times=5))
    result, spans = _traced_run(tmp_path, settings, fake)
    assert result.status == "failed"
    label = _one(spans, "step label")
    assert label.status.status_code == StatusCode.ERROR
    assert label.attributes["error.type"] == "content_filter"
    assert _one(spans, "record r1").status.status_code == StatusCode.ERROR
    assert _one(spans, "run traced").status.status_code == StatusCode.ERROR
    assert not [span for span in spans if span.name == "step draft"]  # its parent failed: it never ran


def test_each_http_attempt_is_its_own_chat_span(tmp_path, settings, fake):
    fake.enqueue(Fault("status", status=503))
    settings = replace(settings, backoff_base_s=0.001, backoff_max_s=0.002)
    result, spans = _traced_run(tmp_path, settings, fake)
    assert result.status == "ok"
    label = _one(spans, "step label")
    attempts = sorted(
        (span for span in spans if span.name.startswith("chat ") and span.parent.span_id == label.context.span_id),
        key=lambda span: span.attributes["pipeline.http_attempt"],
    )
    assert [span.attributes["pipeline.http_attempt"] for span in attempts] == [1, 2]
    first, second = attempts
    assert first.status.status_code == StatusCode.ERROR and first.attributes["http.response.status_code"] == 503
    assert "gen_ai.response.id" not in first.attributes
    assert second.status.status_code != StatusCode.ERROR and second.attributes["gen_ai.response.id"].startswith("gen-")
    assert second.attributes["gen_ai.request.temperature"] == 0.3  # every attempt carries the request
    assert first.end_time <= second.start_time


def test_otel_without_the_extra_names_the_install_command(tmp_path, capsys, monkeypatch):
    path = write_pipeline(tmp_path, TWO_STEPS)
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # as if not installed
    outcome = invoke(capsys, monkeypatch, "run", str(path), "--mock", "--otel", "--input", "ticket=hi")
    assert outcome.code == 3
    assert "pip install 'pipeline-runner[otel]'" in outcome.err


class _Collector(BaseHTTPRequestHandler):
    received: list[ExportTraceServiceRequest]

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/traces" and self.headers.get("Content-Type") == "application/x-protobuf":
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            self.server.received.append(request)
            self.send_response(200)
        else:
            self.send_response(404)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def collector():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _value(any_value):
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(item) for item in any_value.array_value.values)
    return getattr(any_value, kind)


def test_spans_reach_an_otlp_http_collector_with_the_genai_attributes(tmp_path, capsys, monkeypatch, collector):
    path = write_pipeline(tmp_path, TWO_STEPS)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{collector.server_port}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "triage-service")
    monkeypatch.setenv("PIPELINE_OTEL", "1")  # the variable alone turns tracing on
    outcome = invoke(
        capsys, monkeypatch, "run", str(path), "--mock", "--db", str(tmp_path / "p.db"), "--input", "ticket=hello"
    )
    assert outcome.code == 0, outcome.err
    spans, services = [], set()
    for request in collector.received:
        for resource_spans in request.resource_spans:
            for attribute in resource_spans.resource.attributes:
                if attribute.key == "service.name":
                    services.add(_value(attribute.value))
            for scope in resource_spans.scope_spans:
                spans += scope.spans
    assert services == {"triage-service"}
    names = sorted(span.name for span in spans)
    assert names == sorted(
        [
            "run traced",
            "record 1",
            "step label",
            "step draft",
            "chat google/gemini-2.5-flash-lite",
            "chat google/gemini-2.5-flash-lite",
        ]
    )
    chat = next(span for span in spans if span.name.startswith("chat "))
    attributes = {attribute.key: _value(attribute.value) for attribute in chat.attributes}
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "google/gemini-2.5-flash-lite"
    assert attributes["gen_ai.response.id"].startswith("gen-")
    assert attributes["gen_ai.usage.input_tokens"] > 0 and attributes["gen_ai.usage.output_tokens"] > 0
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["pipeline.step"] in ("label", "draft") and attributes["pipeline.cost_usd"] > 0
    assert "gen_ai.input.messages" not in attributes and "hello" not in str(attributes.values())


def _received_spans(collector):
    return [
        span
        for request in collector.received
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]


def test_a_dataset_is_one_trace_and_the_content_variable_adds_the_text(tmp_path, capsys, monkeypatch, collector):
    path = write_pipeline(tmp_path, TWO_STEPS)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"ticket": "first parrot"}\n{"ticket": "second parrot"}\n', encoding="utf-8")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{collector.server_port}/v1/traces")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    outcome = invoke(
        capsys, monkeypatch, "run", str(path), "--mock", "--otel", "--db", str(tmp_path / "p.db"),
        "--inputs", str(inputs), "--output", str(tmp_path / "out.jsonl"),
    )  # fmt: skip
    assert outcome.code == 0, outcome.err
    spans = _received_spans(collector)
    assert sorted(span.name for span in spans if span.name.startswith("record ")) == ["record 1", "record 2"]
    assert len({span.trace_id for span in spans}) == 1
    texts = [
        _value(attribute.value)
        for span in spans
        for attribute in span.attributes
        if attribute.key == "gen_ai.input.messages"
    ]
    assert len(texts) == 4 and sum("second parrot" in text for text in texts) == 2


def test_a_streamed_call_says_so(tmp_path, settings, fake):
    pipeline = load_pipeline(write_pipeline(tmp_path, TWO_STEPS))
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = RunTracer(provider.get_tracer("test"), pipeline.spec)

    async def run():
        options = RunOptions(stream=True)
        async with pipeline.session(settings, transport=mock_transport(fake), hooks=tracer, options=options) as session:
            return await session.run({"ticket": "hi"}, key="r1")

    assert asyncio.run(run()).status == "ok"
    chats = {
        span.attributes["pipeline.step"]: span
        for span in exporter.get_finished_spans()
        if span.name.startswith("chat ")
    }
    assert chats["draft"].attributes["gen_ai.request.stream"] is True  # a text step streams
    assert "gen_ai.request.stream" not in chats["label"].attributes  # a schema step does not
    assert chats["draft"].attributes["gen_ai.usage.output_tokens"] > 0
