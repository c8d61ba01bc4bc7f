"""A fake OpenRouter: answers like the real API (shapes, usage, cost, errors) without a network.

`FakeOpenRouter` holds the behaviour; server.py puts it behind an HTTP server on 127.0.0.1
(for `--mock`, end-to-end tests and benchmarks) or behind an httpx.MockTransport (unit tests).
Reply shapes and failures are scripted with `enqueue(Fault(...))` (see Fault for the kinds);
constructor switches set what holds for every reply (`served_models`, the `/generation` delay,
`tool_rounds`). A request offering `tools` is answered as a model using them would (toolcalls.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..chat.catalog import SNAPSHOT_PATH
from ..errors import SynthesisError
from ..plan.synth import Synthesizer
from ..spec.model_ids import base_model
from . import caching, parts, websearch
from . import replies as shapes
from . import toolcalls as tool_calls_of
from .batches import FakeBatches
from .faults import FAULT_KINDS, Fault, charged, error_status
from .streaming import streamed

__all__ = ["FAULT_KINDS", "FakeOpenRouter", "FakeResponse", "Fault", "Seen"]

REASONING_TOKENS = {"none": 0, "minimal": 16, "low": 64, "medium": 160, "high": 320, "xhigh": 480, "max": 640}


@dataclass(frozen=True)
class FakeResponse:
    status: int
    body: Any = None  # a dict (sent as JSON), a str (sent as is) or None
    headers: Mapping[str, str] = field(default_factory=dict)
    action: str | None = None  # "drop": close the connection without replying
    events: tuple[str, ...] | None = None  # a streamed reply's SSE events (streaming.py), sent one by one
    event_delay_s: float = 0.0  # the pause before each event after the first


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    body: Any
    headers: Mapping[str, str]  # names in lower case
    query: Mapping[str, str] = field(default_factory=dict)


class FakeOpenRouter:
    """OpenRouter's behaviour without a network.

    served_models: requested id -> the id replies name as served (e.g. `DATED_IDS`); default none.
    generation_not_found_lookups: the first N `GET /generation` lookups of each id answer 404
        "Generation not found" (OpenRouter is still indexing it); default 1, so clients must retry.
    generation_not_found_s: lookups within S seconds of the reply answer 404 too; default 0.
    generations_never_found: every lookup answers 404.
    stream_delay_s: the pause between the events of a streamed reply (`stream: true`); default 0.
    tool_rounds: with `tool_choice: auto`, how many rounds of tool calls come before the final answer; default 1.
    """

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        api_key: str | None = None,
        models: list[dict[str, Any]] | None = None,
        history_limit: int = 10_000,
        on_chat_body: Callable[[dict[str, Any]], None] | None = None,
        served_models: Mapping[str, str] | None = None,
        generation_not_found_lookups: int = 1,
        generation_not_found_s: float = 0.0,
        generations_never_found: bool = False,
        stream_delay_s: float = 0.0,
        tool_rounds: int = 1,
    ) -> None:
        self.latency_s = latency_s
        self.api_key = api_key
        self.models = models if models is not None else json.loads(SNAPSHOT_PATH.read_text(encoding="utf-8"))["data"]
        self._by_id = {model["id"]: model for model in self.models}
        self.history: deque[Seen] = deque(maxlen=history_limit)
        self.faults: list[Fault] = []
        self.generations: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.served_models = dict(served_models or {})
        self.generation_not_found_lookups = generation_not_found_lookups
        self.generation_not_found_s = generation_not_found_s
        self.generations_never_found = generations_never_found
        self.stream_delay_s = stream_delay_s
        self.tool_rounds = tool_rounds
        self._generation_lookups: dict[str, int] = {}
        self._generation_born: dict[str, float] = {}
        self._history_limit = history_limit
        self._synthesizers: dict[str, Synthesizer] = {}
        self._on_chat_body = on_chat_body
        self.prompt_cache = caching.PromptCache()
        self.chat_requests = 0
        self.billed_calls = 0
        self.total_cost = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.batches = FakeBatches(self)  # the Batch API: its delay, scripted batch failures, omitted usage

    def stats(self) -> dict[str, Any]:
        return {
            "chat_requests": self.chat_requests,
            "billed_calls": self.billed_calls,
            "total_cost": round(self.total_cost, 10),
            "max_in_flight": self.max_in_flight,
            **self.batches.stats(),
        }

    def enqueue(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def chat_bodies(self) -> list[dict[str, Any]]:
        return [seen.body for seen in self.history if seen.path == "chat/completions"]

    async def handle(
        self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], raw: bytes
    ) -> FakeResponse:
        path = path.strip("/")
        for prefix in ("api/v1/", "api/beta/"):
            path = path[len(prefix) :] if path.startswith(prefix) else path
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            return await self._route(method, path, query, headers, raw)
        finally:
            self.in_flight -= 1

    async def _route(self, method, path, query, headers, raw) -> FakeResponse:
        body = None
        if raw:
            try:
                body = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                return _error(400, "request body is not valid JSON")
        headers = {name.lower(): value for name, value in headers.items()}
        self.history.append(Seen(method, path, body, headers, dict(query)))
        authorization = headers.get("authorization", "")
        if not authorization.startswith("Bearer ") or not authorization[7:].strip():
            return _error(401, "Missing Authentication header")
        if self.api_key is not None and authorization[7:] != self.api_key:
            return _error(401, "User not found.")
        if method == "GET" and path == "models":
            return FakeResponse(200, {"data": self.models})
        if method == "GET" and path == "generation":
            return self._generation(query.get("id", ""))
        if method == "GET" and path in ("key", "auth/key"):
            return FakeResponse(200, {"data": self._key_info()})
        if method == "GET" and path == "_fake/stats":  # not OpenRouter's: what tests and benchmarks count
            return FakeResponse(200, self.stats())
        if method == "POST" and path == "chat/completions":
            if not isinstance(body, dict):
                return _error(400, "expected a JSON object")
            self.chat_requests += 1
            if self._on_chat_body is not None:
                self._on_chat_body(body)
            return streamed(await self._chat(body), body, self.stream_delay_s)
        if path == "batches" or path.startswith("batches/"):
            return FakeResponse(*self.batches.handle(method, path, raw, body))
        return _error(404, f"no route for {method} /{path}")

    def _generation(self, generation_id: str) -> FakeResponse:
        data = self.generations.get(generation_id)
        if data is None:
            return _error(404, "Generation not found")
        lookups = self._generation_lookups[generation_id] = self._generation_lookups.get(generation_id, 0) + 1
        indexing = time.monotonic() - self._generation_born[generation_id] < self.generation_not_found_s
        if self.generations_never_found or lookups <= self.generation_not_found_lookups or indexing:
            return _error(404, "Generation not found")
        return FakeResponse(200, {"data": data})

    def _key_info(self) -> dict[str, Any]:
        return {
            "label": "fake-key",
            "limit": None,
            "usage": round(self.total_cost, 10),
            "limit_remaining": None,
            "is_free_tier": False,
            "rate_limit": {"requests": 1000, "interval": "10s"},
        }

    def _take_fault(self, model: str) -> Fault | None:
        for fault in self.faults:
            if fault.times > 0 and (fault.model is None or fault.model == model):
                fault.times -= 1
                if fault.times == 0:
                    self.faults.remove(fault)
                return fault
        return None

    async def _chat(self, body: dict[str, Any]) -> FakeResponse:
        requested = body.get("model")
        candidates = [requested, *[model for model in body.get("models") or () if model != requested]]
        fault = None
        answering = requested
        for answering in candidates:
            fault = self._take_fault(answering)
            server_can_fall_back = answering != candidates[-1]
            if fault and error_status(fault) in (429, 500, 502, 503) and server_can_fall_back:
                continue  # OpenRouter's server-side fallback: the next model in `models` answers
            break
        if answering not in self._by_id and base_model(answering) not in self._by_id:  # `x:nitro` runs on x
            return _error(400, f"{answering} is not a valid model ID")
        if (refused := parts.problem(body)) is not None:
            return _error(400, refused)
        unanswered = tool_calls_of.unanswered(body.get("messages") or [])
        if unanswered:
            return _error(400, f"tool_call_ids did not have response messages: {', '.join(unanswered)}")
        if fault is not None:
            early = await self._apply_early_fault(fault, body, answering)
            if early is not None:
                return early
        try:
            return self._completion(body, answering, fault)
        except SynthesisError as exc:
            return _error(400, f"the fake OpenRouter {exc}")

    async def _apply_early_fault(self, fault: Fault, body: dict[str, Any], model: str) -> FakeResponse | None:
        status = error_status(fault)
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        if fault.kind == "status":
            message = fault.message or shapes.DEFAULT_MESSAGES.get(status, "error")
            return _error(status, message, fault.metadata, headers)
        if fault.kind == "upstream_error":
            metadata = fault.metadata or shapes.upstream_metadata(status, model)
            return _error(status, fault.message or "Provider returned error", metadata, headers)
        if fault.kind == "moderation":
            prompt = "".join(shapes.text_of(message.get("content")) for message in body.get("messages") or ())
            metadata = fault.metadata or shapes.moderation_metadata(fault.reasons, prompt, model)
            provider = shapes.provider_of(model)
            reasons = ", ".join(fault.reasons)
            message = f'{model} requires moderation on {provider}. Your input was flagged for "{reasons}".'
            return _error(403, fault.message or message, metadata)
        if fault.kind == "drop":
            return FakeResponse(0, action="drop")
        if fault.kind == "hang":
            await asyncio.sleep(fault.delay_s)
            return None
        if fault.kind == "garbage":
            return FakeResponse(200, "<html>upstream error</html>")
        return None

    def _completion(self, body: dict[str, Any], model: str, fault: Fault | None) -> FakeResponse:
        kind = fault.kind if fault is not None else None
        info = self._by_id.get(model) or self._by_id[base_model(model)]
        messages = body.get("messages") or []
        prompt_text = "".join(shapes.text_of(message.get("content")) for message in messages)
        user_text = shapes.text_of(messages[-1].get("content")) if messages else ""
        seed = hashlib.sha256(prompt_text.encode("utf-8")).digest()
        schema = shapes.requested_schema(body)
        tool_calls = tool_calls_of.calls(body, fault, self.tool_rounds, self._synthesizer, seed, user_text)
        if kind == "content":
            content = fault.content
        elif tool_calls:
            content = None
        elif schema is not None:
            content = json.dumps(self._synthesizer(schema).value(seed, user_text), ensure_ascii=False)
        else:
            content = shapes.mock_text(model, messages)
        finish_reason = "tool_calls" if tool_calls else "stop"
        reasoning_config = body.get("reasoning") or {}
        reasoning_tokens = 0
        if "reasoning" in info.get("supported_parameters", ()):
            effort = reasoning_config.get("effort")
            reasoning_tokens = reasoning_config.get("max_tokens") or REASONING_TOKENS.get(effort or "low", 64)
        max_tokens = body.get("max_tokens") or 4096
        reasoning_tokens = min(reasoning_tokens, max_tokens // 2)
        content_tokens = shapes.tokens(content or json.dumps(tool_calls or ""))
        if reasoning_tokens + content_tokens > max_tokens:
            finish_reason = "length"
            content_tokens = max_tokens - reasoning_tokens
            content = (content or "")[: content_tokens * 4]
        if kind == "finish":
            finish_reason = fault.finish_reason or "error"
            if finish_reason == "content_filter":
                content = None
        if kind in ("choice_error", "error_in_body", "stream_error"):
            finish_reason = "error"
        if kind == "choice_error":
            content = ""
        pricing = info["pricing"]
        media_tokens, images_cost = parts.media_cost(body, pricing)
        prompt_tokens = shapes.tokens(prompt_text) + 3 * len(messages) + media_tokens
        completion_tokens = content_tokens + reasoning_tokens
        cache_use, tokens_cost = self.prompt_cache.priced(body, model, prompt_tokens, pricing)
        prompt_cost = round(tokens_cost + images_cost, 12)
        completion_cost = round(completion_tokens * float(pricing["completion"]), 12)
        price = round(prompt_cost + completion_cost, 12)
        billed_usd = round(charged(fault, price) + websearch.fee(body), 12)
        served = self.served_models.get(model, model)
        if kind == "served_model":
            served = fault.served_model or shapes.DATED_IDS.get(model, f"{model}-20250101")
        native = shapes.native_finish_reason(model, finish_reason)
        if kind == "finish" and fault.native_finish_reason is not None:
            native = fault.native_finish_reason
        generation_id = shapes.new_generation_id()
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        message["annotations"] = websearch.citations(body, content, user_text)  # url_citation from web search
        if tool_calls:
            message["tool_calls"] = tool_calls
        message["reasoning"] = (
            None
            if reasoning_config.get("exclude") or not reasoning_tokens
            else f"Mock reasoning about the request ({reasoning_tokens} tokens)."
        )
        if tool_calls and message["reasoning"]:  # what a reasoning model wants back with its tool calls
            message["reasoning_details"] = tool_calls_of.reasoning_details(model, message["reasoning"], seed)
        choice: dict[str, Any] = {
            "logprobs": None,
            "finish_reason": finish_reason,
            "native_finish_reason": native,
            "index": 0,
            "message": message,
        }
        provider = shapes.provider_of(model)
        if kind == "choice_error":
            choice["error"] = {
                "code": fault.status or 502,
                "message": fault.message or "Provider returned error",
                "metadata": fault.metadata or shapes.upstream_metadata(fault.status or 502, model),
            }
        response: dict[str, Any] = {
            "id": generation_id,
            "provider": provider,
            "model": served,
            "object": "chat.completion",
            "created": int(time.time()),
            "system_fingerprint": None,
            "choices": [] if kind == "empty_choices" else [choice],
        }
        if kind != "no_usage":
            usage = shapes.usage(
                prompt_tokens,
                completion_tokens,
                reasoning_tokens,
                prompt_cost=prompt_cost,
                completion_cost=completion_cost,
                cost=billed_usd,
                is_byok=kind == "byok",
            )
            caching.report(usage, cache_use)
            response["usage"] = shapes.without_cost(usage) if kind == "no_cost" else usage
            failed_first = (fault.status or 429) if kind == "provider_fallback" else None
            self._bill(generation_id, served, usage, finish_reason, native, body.get("user"), failed_first)
            self.generations[generation_id]["cache_discount"] = caching.cache_discount(pricing, cache_use)
        if kind in ("error_in_body", "stream_error"):
            response["error"] = {
                "code": 502,
                "message": fault.message or "Provider returned error",
                "metadata": fault.metadata or {"provider_name": provider},
            }
        return FakeResponse(200, response)

    def _synthesizer(self, schema: Any) -> Synthesizer:
        key = json.dumps(schema, sort_keys=True)
        if key not in self._synthesizers:
            if len(self._synthesizers) > 256:
                self._synthesizers.clear()
            self._synthesizers[key] = Synthesizer(schema)
        return self._synthesizers[key]

    def _bill(self, generation_id: str, served: str, usage, finish_reason: str, native: str, user, failed=None) -> None:
        """Count a billed reply and keep its generation record for `GET /generation`."""
        self.billed_calls += 1
        self.total_cost += usage["cost"]
        self.generations[generation_id] = shapes.generation(
            generation_id,
            model=served,
            usage_body=usage,
            finish_reason=finish_reason,
            native_finish=native,
            latency_ms=int(self.latency_s * 1000),
            user=user,
            failed_first=failed,
        )
        self._generation_born[generation_id] = time.monotonic()
        while len(self.generations) > self._history_limit:
            evicted, _ = self.generations.popitem(last=False)
            self._generation_born.pop(evicted, None)
            self._generation_lookups.pop(evicted, None)


def _error(status: int, message: str, metadata=None, headers=None) -> FakeResponse:
    return FakeResponse(status, shapes.error_body(status, message, metadata), headers or {})
