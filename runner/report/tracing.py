"""OpenTelemetry traces of a run, as a run's Hooks: a span per run, record and step, and a `chat {model}`
client span per HTTP attempt with the GenAI semantic conventions' `gen_ai.*` attributes.

Imported only when tracing is on (`pipeline run --otel`), so the core never needs the `otel` extra.
Prompt and reply text go into spans only with `content=True`; the API key is never in a body or a
reply, so it never reaches an attribute.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from ..chat.reply import Reply
from ..errors import PipelineError
from ..outcomes import Status as RunState
from ..run.hooks import Hooks
from ..run.results import CacheEntry, CostEvent, RecordResult, StepResult
from ..spec.model import ChatStep, PipelineSpec

PROVIDER = "openrouter"
# Request settings of the body as GenAI attributes (the body's key -> the attribute).
REQUEST_ATTRIBUTES = {
    "temperature": "gen_ai.request.temperature",
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "seed": "gen_ai.request.seed",
}


@dataclass
class _Call:
    """The HTTP attempt in flight for one call: its span and its number (1 for the first)."""

    span: Span
    attempt: int
    model: str
    base: dict[str, Any]  # the attributes every attempt of the call carries


class RunTracer(Hooks):
    """Spans of one run from its events: `start_run`, then the session's hooks, then `end_run`.

    Spans of a record, a step and a call are found again by the record key (and step id); records
    running at once under the same key (Pipeline.run's default key) share the first one's spans.
    """

    def __init__(
        self,
        tracer: trace.Tracer,
        spec: PipelineSpec,
        *,
        content: bool = False,
        base_url: str | None = None,
    ) -> None:
        self._tracer = tracer
        # A chat step's module; a step of another kind (code, ...) has none: its kind stands in.
        self._modules = {step.id: step.module if isinstance(step, ChatStep) else step.kind for step in spec.steps}
        self._name = spec.name
        self._content = content
        self._server = _server(base_url)
        self._run: Span | None = None
        self._records: dict[str, list[Span]] = {}
        self._steps: dict[tuple[str, str], list[Span]] = {}
        self._calls: dict[tuple[str, str, int | None], list[_Call]] = {}  # by record, step and element

    def start_run(self, run_id: str) -> None:
        self._run = self._tracer.start_span(
            f"run {self._name}",
            kind=SpanKind.INTERNAL,
            attributes={"pipeline.run_id": run_id, "pipeline.name": self._name},
        )

    def end_run(self, *, records_ok: int, records_failed: int, cost_usd: float, stopped: str | None = None) -> None:
        span = self._run
        if span is None:
            return
        span.set_attributes(
            {
                "pipeline.records_ok": records_ok,
                "pipeline.records_failed": records_failed,
                "pipeline.cost_usd": cost_usd,
            }
        )
        if stopped is not None:
            span.set_status(Status(StatusCode.ERROR, stopped))
        elif records_failed:
            span.set_status(Status(StatusCode.ERROR, f"{records_failed} record(s) failed"))
        for spans in (*self._calls.values(), *self._steps.values(), *self._records.values()):
            for left in spans:  # cancelled work has no end event: close it with the run
                (left.span if isinstance(left, _Call) else left).end()
        span.end()
        self._run = None

    def _parent(self, span: Span | None):
        return trace.set_span_in_context(span) if span is not None else None

    # records

    def on_record_start(self, record_key: str) -> None:
        span = self._tracer.start_span(
            f"record {record_key}", context=self._parent(self._run), attributes={"pipeline.record_key": record_key}
        )
        self._records.setdefault(record_key, []).append(span)

    def on_record_end(self, result: RecordResult) -> None:
        key = str(result.key)
        span = _pop(self._records, key)
        if span is None:  # read back from an earlier session, or its input was invalid: no start
            span = self._tracer.start_span(
                f"record {key}", context=self._parent(self._run), attributes={"pipeline.record_key": key}
            )
        span.set_attributes({"pipeline.status": str(result.status), "pipeline.cost_usd": result.cost_usd})
        if result.resumed:
            span.set_attribute("pipeline.resumed", True)
        if result.status == RunState.FAILED and result.error is not None:
            span.set_attribute("error.type", str(result.error.kind))
            span.set_status(Status(StatusCode.ERROR, f"step '{result.error.step}' failed ({result.error.kind})"))
        span.end()

    # steps

    def _step_attributes(self, record_key: str, step_id: str) -> dict[str, Any]:
        return {
            "pipeline.step": step_id,
            "pipeline.module": self._modules.get(step_id) or "",
            "pipeline.record_key": record_key,
        }

    def on_step_start(self, record_key: str, step_id: str) -> None:
        span = self._tracer.start_span(
            f"step {step_id}",
            context=self._parent(_first(self._records, record_key)),
            attributes=self._step_attributes(record_key, step_id),
        )
        self._steps.setdefault((record_key, step_id), []).append(span)

    def on_step_end(self, record_key: str, result: StepResult) -> None:
        span = _pop(self._steps, (record_key, result.step))
        if span is None:  # skipped by `when` or by a failed parent: it never started
            span = self._tracer.start_span(
                f"step {result.step}",
                context=self._parent(_first(self._records, record_key)),
                attributes=self._step_attributes(record_key, result.step),
            )
        span.set_attributes(
            {
                "pipeline.status": str(result.status),
                "pipeline.cost_usd": result.cost_usd,
                "pipeline.attempts": result.attempts,
            }
        )
        if result.model:
            span.set_attribute("gen_ai.response.model", result.model)
        if result.error is not None:
            span.set_attribute("error.type", str(result.error.kind))
            span.set_status(Status(StatusCode.ERROR, f"{result.error.kind} after {result.error.attempts} attempt(s)"))
        span.end()

    def on_cost(self, event: CostEvent, entry: CacheEntry | None) -> None:
        if event.cached:
            span = _first(self._steps, (event.record_key, event.step))
            if span is not None:
                span.set_attribute("pipeline.cache_hit", True)

    # calls: one span per HTTP attempt

    def on_call_start(
        self, record_key: str, step_id: str, model: str, *, item_index: int | None = None, round: int | None = None
    ) -> None:
        base = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": PROVIDER,
            "gen_ai.system": PROVIDER,  # the older name, still read by some backends
            "gen_ai.request.model": model,
            **self._server,
            **self._step_attributes(record_key, step_id),
        }
        if item_index is not None:
            base["pipeline.item_index"] = item_index
        if round is not None:
            base["pipeline.round"] = round
        self._calls.setdefault((record_key, step_id, item_index), []).append(
            _Call(self._start_attempt(record_key, step_id, model, base, 1), 1, model, base)
        )

    def _start_attempt(
        self, record_key: str, step_id: str, model: str, base: dict[str, Any], attempt: int, start_ns: int | None = None
    ) -> Span:
        return self._tracer.start_span(
            f"chat {model}",
            kind=SpanKind.CLIENT,
            context=self._parent(_first(self._steps, (record_key, step_id))),
            attributes={**base, "pipeline.http_attempt": attempt},
            start_time=start_ns,
        )

    def on_call_body(
        self, record_key: str, step_id: str, model: str, body: Mapping[str, Any], *, item_index: int | None = None
    ) -> None:
        call = _first(self._calls, (record_key, step_id, item_index))
        if call is None:
            return
        attributes = request_attributes(body)
        if self._content:
            attributes["gen_ai.input.messages"] = json.dumps(
                input_messages(body.get("messages") or ()), ensure_ascii=False
            )
        call.base.update(attributes)
        call.span.set_attributes(attributes)

    def on_call_retry(
        self,
        record_key: str,
        step_id: str,
        model: str,
        status: int | None,
        reason: str,
        wait_s: float,
        *,
        item_index: int | None = None,
    ) -> None:
        call = _first(self._calls, (record_key, step_id, item_index))
        if call is None:
            return
        _failed_attempt(call.span, status, reason)
        call.span.end()
        call.attempt += 1
        next_start = time.time_ns() + int(wait_s * 1e9)  # the next attempt starts after the backoff
        call.span = self._start_attempt(record_key, step_id, model, call.base, call.attempt, next_start)

    def on_call_end(
        self,
        record_key: str,
        step_id: str,
        model: str,
        reply: Reply | None,
        error: PipelineError | None,
        *,
        item_index: int | None = None,
    ) -> None:
        call = _pop(self._calls, (record_key, step_id, item_index))
        if call is None:
            return
        span = call.span
        if reply is not None:
            span.set_attributes(response_attributes(reply))
            if self._content and reply.content is not None:
                span.set_attribute("gen_ai.output.messages", json.dumps(output_messages(reply), ensure_ascii=False))
        if error is not None:
            _failed_attempt(span, getattr(error, "status", None), str(error), type(error).__name__)
        span.end()


def request_attributes(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body's request settings as `gen_ai.request.*` attributes (no text of the prompt)."""
    attributes: dict[str, Any] = {}
    for key, name in REQUEST_ATTRIBUTES.items():
        value = body.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attributes[name] = value
    stop = body.get("stop")
    if stop:
        attributes["gen_ai.request.stop_sequences"] = [stop] if isinstance(stop, str) else [str(item) for item in stop]
    if body.get("stream"):
        attributes["gen_ai.request.stream"] = True
    attributes["gen_ai.output.type"] = "json" if body.get("response_format") else "text"
    return attributes


def response_attributes(reply: Reply) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if reply.model:
        attributes["gen_ai.response.model"] = reply.model
    if reply.generation_id:
        attributes["gen_ai.response.id"] = reply.generation_id
    if reply.finish_reason:
        attributes["gen_ai.response.finish_reasons"] = [reply.finish_reason]
    if reply.provider:
        attributes["pipeline.provider"] = reply.provider
    usage = reply.usage
    if usage is not None:
        attributes.update(
            {
                "gen_ai.usage.input_tokens": usage.prompt_tokens,
                "gen_ai.usage.output_tokens": usage.completion_tokens,
                "gen_ai.usage.reasoning.output_tokens": usage.reasoning_tokens,
                "gen_ai.usage.cache_read.input_tokens": usage.cached_tokens,
                "gen_ai.usage.cache_creation.input_tokens": usage.cache_write_tokens,
            }
        )
        if usage.cost_usd is not None:  # looked up or estimated later otherwise: the step span has it
            attributes["pipeline.cost_usd"] = usage.cost_usd
    attributes["pipeline.latency_ms"] = reply.latency_ms
    return attributes


def input_messages(messages: Any) -> list[dict[str, Any]]:
    """The request's messages in the GenAI conventions' shape: role and parts (text kept, media named only)."""
    shaped = []
    for message in messages:
        content = message.get("content")
        parts: list[dict[str, Any]] = []
        if isinstance(content, str):
            parts.append({"type": "text", "content": content})
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") == "text":
                    parts.append({"type": "text", "content": part.get("text", "")})
                elif isinstance(part, dict):
                    parts.append({"type": str(part.get("type", "unknown"))})
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            parts.append({"type": "tool_call", "id": call.get("id"), "name": function.get("name")})
        shaped.append({"role": message.get("role", "user"), "parts": parts})
    return shaped


def output_messages(reply: Reply) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"type": "text", "content": reply.content or ""}]
    parts += [{"type": "tool_call", "id": call.id, "name": call.name} for call in reply.tool_calls]
    return [{"role": "assistant", "parts": parts, "finish_reason": reply.finish_reason or ""}]


def _failed_attempt(span: Span, status: int | None, reason: str, kind: str | None = None) -> None:
    if status is not None:
        span.set_attribute("http.response.status_code", status)
    span.set_attribute("error.type", kind or (str(status) if status is not None else "transport"))
    span.set_status(Status(StatusCode.ERROR, reason))


def _server(base_url: str | None) -> dict[str, Any]:
    if not base_url:
        return {}
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return {"server.address": parts.hostname or "", "server.port": port}


def _first(table: dict, key) -> Any:
    found = table.get(key)
    return found[0] if found else None


def _pop(table: dict, key) -> Any:
    found = table.get(key)
    if not found:
        return None
    item = found.pop(0)
    if not found:
        del table[key]
    return item


def otlp_tracer(service_name: str = "pipeline") -> tuple[trace.Tracer, Any]:
    """A tracer whose spans go over OTLP/HTTP (protobuf) to the collector of the `OTEL_EXPORTER_OTLP_*`
    variables (read by the exporter), and its provider: `shutdown()` it to send the last spans."""
    import os

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    given = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(given))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider.get_tracer("pipeline-runner"), provider
