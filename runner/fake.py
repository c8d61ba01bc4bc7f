"""A fake OpenRouter: answers like the real API (shapes, usage, cost, errors) without a network.

`FakeOpenRouter` holds the behaviour; fakeserver.py puts it behind an HTTP server on 127.0.0.1
(for `--mock`, end-to-end tests and benchmarks) or behind an httpx.MockTransport (unit tests).
Failures are scripted with `enqueue(Fault(...))`.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .catalog import SNAPSHOT_PATH
from .request import system_with_schema
from .synth import synthesize

SCHEMA_MARKER = system_with_schema(None, {}).split("\n")[0]
REASONING_TOKENS = {"none": 0, "minimal": 16, "low": 64, "medium": 160, "high": 320, "xhigh": 480, "max": 640}


@dataclass
class Fault:
    """One scripted misbehaviour, used `times` times for requests to `model` (any model when None).

    kind: "status" (an HTTP error with OpenRouter's error body), "drop" (connection closed),
    "hang" (no reply for `delay_s`), "finish" (a billed 200 with `finish_reason`),
    "error_in_body" (a 200 whose body carries an error object), "content" (a billed 200 with
    this exact content), "garbage" (a 200 whose body is not JSON), "no_usage" (a 200 without usage).
    """

    kind: str
    status: int = 500
    message: str = ""
    retry_after: str | None = None
    metadata: dict[str, Any] | None = None
    finish_reason: str | None = None
    content: str | None = None
    delay_s: float = 5.0
    model: str | None = None
    times: int = 1


@dataclass(frozen=True)
class FakeResponse:
    status: int
    body: Any = None  # a dict (sent as JSON), a str (sent as is) or None
    headers: Mapping[str, str] = field(default_factory=dict)
    action: str | None = None  # "drop": close the connection without replying


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    body: Any
    headers: Mapping[str, str]  # names in lower case


class FakeOpenRouter:
    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        api_key: str | None = None,
        models: list[dict[str, Any]] | None = None,
        history_limit: int = 10_000,
        on_chat_body: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.latency_s = latency_s
        self.api_key = api_key
        self.models = models if models is not None else json.loads(SNAPSHOT_PATH.read_text(encoding="utf-8"))["data"]
        self._by_id = {model["id"]: model for model in self.models}
        self.history: deque[Seen] = deque(maxlen=history_limit)
        self.faults: list[Fault] = []
        self.generations: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._history_limit = history_limit
        self._ids = itertools.count(1)
        self._on_chat_body = on_chat_body
        self.chat_requests = 0
        self.billed_calls = 0
        self.total_cost = 0.0
        self.in_flight = 0
        self.max_in_flight = 0

    def stats(self) -> dict[str, Any]:
        return {
            "chat_requests": self.chat_requests,
            "billed_calls": self.billed_calls,
            "total_cost": round(self.total_cost, 10),
            "max_in_flight": self.max_in_flight,
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
        if path.startswith("api/v1/"):
            path = path[len("api/v1/") :]
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
        self.history.append(Seen(method, path, body, headers))
        authorization = headers.get("authorization", "")
        if not authorization.startswith("Bearer ") or not authorization[7:].strip():
            return _error(401, "Missing Authentication header")
        if self.api_key is not None and authorization[7:] != self.api_key:
            return _error(401, "User not found.")
        if method == "GET" and path == "models":
            return FakeResponse(200, {"data": self.models})
        if method == "GET" and path == "generation":
            generation = self.generations.get(query.get("id", ""))
            return FakeResponse(200, {"data": generation}) if generation else _error(404, "Generation not found")
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
            return await self._chat(body)
        return _error(404, f"no route for {method} /{path}")

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
            if fault and fault.kind == "status" and fault.status in (429, 500, 502, 503) and server_can_fall_back:
                continue  # OpenRouter's server-side fallback: the next model in `models` answers
            break
        if answering not in self._by_id:
            return _error(400, f"{answering} is not a valid model ID")
        if fault is not None:
            early = await self._apply_early_fault(fault)
            if early is not None:
                return early
        return self._completion(body, answering, fault)

    async def _apply_early_fault(self, fault: Fault) -> FakeResponse | None:
        if fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            return _error(
                fault.status, fault.message or _DEFAULT_MESSAGES.get(fault.status, "error"), fault.metadata, headers
            )
        if fault.kind == "drop":
            return FakeResponse(0, action="drop")
        if fault.kind == "hang":
            await asyncio.sleep(fault.delay_s)
            return None
        if fault.kind == "garbage":
            return FakeResponse(200, "<html>upstream error</html>")
        return None

    def _completion(self, body: dict[str, Any], model: str, fault: Fault | None) -> FakeResponse:
        info = self._by_id[model]
        messages = body.get("messages") or []
        prompt_text = "".join(_text_of(message.get("content")) for message in messages)
        seed = hashlib.sha256(prompt_text.encode("utf-8")).digest()
        schema = _requested_schema(body)
        if fault is not None and fault.kind == "content":
            content = fault.content
        elif schema is not None:
            user_text = _text_of(messages[-1].get("content")) if messages else ""
            content = json.dumps(synthesize(schema, seed, user_text), ensure_ascii=False)
        else:
            content = _mock_text(model, messages)
        finish_reason = "stop"
        reasoning_config = body.get("reasoning") or {}
        reasoning_tokens = 0
        if "reasoning" in info.get("supported_parameters", ()):
            effort = reasoning_config.get("effort")
            reasoning_tokens = reasoning_config.get("max_tokens") or REASONING_TOKENS.get(effort or "low", 64)
        max_tokens = body.get("max_tokens") or 4096
        reasoning_tokens = min(reasoning_tokens, max_tokens // 2)
        content_tokens = _tokens(content or "")
        if reasoning_tokens + content_tokens > max_tokens:
            finish_reason = "length"
            content_tokens = max_tokens - reasoning_tokens
            content = (content or "")[: content_tokens * 4]
        if fault is not None and fault.kind == "finish":
            finish_reason = fault.finish_reason or "error"
            if finish_reason == "content_filter":
                content = None
        prompt_tokens = _tokens(prompt_text) + 3 * len(messages)
        completion_tokens = content_tokens + reasoning_tokens
        pricing = info["pricing"]
        cost = round(prompt_tokens * float(pricing["prompt"]) + completion_tokens * float(pricing["completion"]), 12)
        generation_id = f"gen-{int(time.time())}-fake{next(self._ids):012d}"
        provider = _provider_of(model)
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
        message["reasoning"] = (
            None
            if reasoning_config.get("exclude") or not reasoning_tokens
            else f"Mock reasoning about the request ({reasoning_tokens} tokens)."
        )
        response: dict[str, Any] = {
            "id": generation_id,
            "provider": provider,
            "model": model,
            "object": "chat.completion",
            "created": int(time.time()),
            "choices": [
                {
                    "logprobs": None,
                    "finish_reason": finish_reason,
                    "native_finish_reason": finish_reason.upper(),
                    "index": 0,
                    "message": message,
                }
            ],
        }
        if fault is None or fault.kind != "no_usage":
            response["usage"] = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "cost": cost,
                "is_byok": False,
                "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0, "audio_tokens": 0},
                "cost_details": {"upstream_inference_cost": cost},
                "completion_tokens_details": {"reasoning_tokens": reasoning_tokens, "image_tokens": 0},
            }
            self.billed_calls += 1
            self.total_cost += cost
            self._remember(generation_id, model, provider, prompt_tokens, completion_tokens, cost)
        if fault is not None and fault.kind == "error_in_body":
            response["error"] = {
                "code": 502,
                "message": fault.message or "Provider returned error",
                "metadata": fault.metadata or {"provider_name": provider},
            }
            response["choices"][0]["finish_reason"] = "error"
        return FakeResponse(200, response)

    def _remember(self, generation_id, model, provider, prompt_tokens, completion_tokens, cost) -> None:
        self.generations[generation_id] = {
            "id": generation_id,
            "model": model,
            "provider_name": provider,
            "total_cost": cost,
            "tokens_prompt": prompt_tokens,
            "tokens_completion": completion_tokens,
            "latency": int(self.latency_s * 1000),
            "generation_time": int(self.latency_s * 1000),
            "cache_discount": None,
            "provider_responses": [{"provider_name": provider, "status": 200, "model_permaslug": model}],
        }
        while len(self.generations) > self._history_limit:
            self.generations.popitem(last=False)


_DEFAULT_MESSAGES = {
    400: "Invalid request parameters",
    401: "User not found.",
    402: "Insufficient credits. Add more using https://openrouter.ai/settings/credits",
    403: "Input was flagged by moderation",
    404: "No endpoints found that can handle the requested parameters.",
    408: "Request timed out",
    429: "Rate limit exceeded",
    500: "Internal Server Error",
    502: "Provider returned error",
    503: "No available provider meets your routing requirements",
}


def _error(status: int, message: str, metadata=None, headers=None) -> FakeResponse:
    error: dict[str, Any] = {"code": status, "message": message}
    if metadata is not None:
        error["metadata"] = metadata
    return FakeResponse(status, {"error": error}, headers or {})


def _provider_of(model: str) -> str:
    return {"google": "Google AI Studio", "anthropic": "Anthropic", "openai": "OpenAI"}.get(
        model.split("/")[0], "DeepInfra"
    )


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _requested_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return (response_format.get("json_schema") or {}).get("schema") or {}
    for message in body.get("messages") or ():
        text = _text_of(message.get("content"))
        if message.get("role") == "system" and SCHEMA_MARKER in text:
            try:
                return json.loads(text.split(SCHEMA_MARKER, 1)[1].strip())
            except json.JSONDecodeError:
                return {}
    return {} if response_format.get("type") == "json_object" else None


def _mock_text(model: str, messages: list[dict[str, Any]]) -> str:
    last = _text_of(messages[-1].get("content")) if messages else ""
    words = " ".join(last.split()[:12])
    return f"[mock reply from {model}] {words}"
