"""What OpenRouter answered: a chat reply and its usage, parsed from the response body."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .messages import ToolCallPart


@dataclass(frozen=True)
class Usage:
    """`usage` of a reply. `cost_usd` is None when OpenRouter billed the reply but sent no `cost`."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float | None = 0.0
    cache_write_tokens: int = 0
    is_byok: bool = False
    upstream_cost_usd: float | None = None  # what the provider charged (billed by it, for BYOK)

    @classmethod
    def from_body(cls, usage: dict[str, Any]) -> Usage:
        prompt_details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        cost_details = usage.get("cost_details") or {}
        prompt = _int(usage.get("prompt_tokens"))
        completion = _int(usage.get("completion_tokens"))
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            reasoning_tokens=_int(completion_details.get("reasoning_tokens")),
            cached_tokens=_int(prompt_details.get("cached_tokens")),
            total_tokens=_int(usage.get("total_tokens")) or prompt + completion,
            cost_usd=_money(usage.get("cost")),
            cache_write_tokens=_int(prompt_details.get("cache_write_tokens")),
            is_byok=usage.get("is_byok") is True,
            upstream_cost_usd=_money(cost_details.get("upstream_inference_cost")),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cached_tokens": self.cached_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": self.cost_usd,
            "cache_write_tokens": self.cache_write_tokens,
            "is_byok": self.is_byok,
            "upstream_cost_usd": self.upstream_cost_usd,
        }


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _money(value: Any) -> float | None:
    """A dollar amount as sent, or None when absent: a missing cost is never a silent 0."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Reply:
    """A 200 from /chat/completions, good or bad; `usage` is set when OpenRouter billed it."""

    generation_id: str | None
    model: str | None
    provider: str | None
    content: str | None
    reasoning: str | None
    finish_reason: str | None
    native_finish_reason: str | None
    usage: Usage | None
    error: dict[str, Any] | None
    latency_ms: int
    has_choice: bool = True  # False when the body carried no `choices` at all
    tool_calls: tuple[ToolCallPart, ...] = ()  # the functions the reply asked to call
    reasoning_details: str | None = None  # JSON text as sent, to hand back with the assistant turn
    annotations: tuple[Annotation, ...] = ()

    @classmethod
    def from_body(cls, body: dict[str, Any], latency_ms: int) -> Reply:
        choices = body.get("choices") or []
        choice = choices[0] if choices and isinstance(choices[0], dict) else {}
        message = choice.get("message") or {}
        error = body.get("error") or choice.get("error")
        usage = body.get("usage")
        content = message.get("content")
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return cls(
            generation_id=body.get("id"),
            model=body.get("model"),
            provider=body.get("provider"),
            content=content,
            reasoning=message.get("reasoning"),
            finish_reason=choice.get("finish_reason"),
            native_finish_reason=choice.get("native_finish_reason"),
            usage=Usage.from_body(usage) if isinstance(usage, dict) else None,
            error=error if isinstance(error, dict) else ({"message": str(error)} if error else None),
            latency_ms=latency_ms,
            has_choice=bool(choice),
            tool_calls=_tool_calls(message.get("tool_calls")),
            reasoning_details=_json_text(message.get("reasoning_details")),
            annotations=_annotations(message.get("annotations")),
        )

    @classmethod
    def from_stream(cls, chunks: Iterable[dict[str, Any]], latency_ms: int) -> Reply:
        """The reply a `stream: true` request's SSE chunks add up to (each chunk's JSON, in order).

        Content, reasoning and each tool call's argument text arrive in fragments; the usage comes
        in the last chunk; an error sent mid-stream is kept as the reply's error.
        """
        first: dict[str, Any] = {}
        content: list[str] = []
        reasoning: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        details: list[Any] = []
        annotations: list[Any] = []
        finish: dict[str, Any] = {}
        usage = error = None
        has_choice = False
        for chunk in chunks:
            first = first or chunk
            usage = chunk.get("usage") or usage
            error = chunk.get("error") or error
            choices = chunk.get("choices") or []
            choice = choices[0] if choices and isinstance(choices[0], dict) else None
            if choice is None:
                continue
            has_choice = True
            for name in ("finish_reason", "native_finish_reason"):
                finish[name] = choice.get(name) or finish.get(name)
            delta = choice.get("delta") or {}
            if delta.get("content") is not None:
                content.append(delta["content"])
            if delta.get("reasoning") is not None:
                reasoning.append(delta["reasoning"])
            details.extend(delta.get("reasoning_details") or ())
            annotations.extend(delta.get("annotations") or ())
            for fragment in delta.get("tool_calls") or ():
                call = calls.setdefault(fragment.get("index", len(calls)), {"id": "", "name": "", "arguments": ""})
                function = fragment.get("function") or {}
                call["id"] = fragment.get("id") or call["id"]
                call["name"] = function.get("name") or call["name"]
                call["arguments"] += function.get("arguments") or ""
        return cls(
            generation_id=first.get("id"),
            model=first.get("model"),
            provider=first.get("provider"),
            content="".join(content) if content else None,
            reasoning="".join(reasoning) if reasoning else None,
            finish_reason=finish.get("finish_reason"),
            native_finish_reason=finish.get("native_finish_reason"),
            usage=Usage.from_body(usage) if isinstance(usage, dict) else None,
            error=error if isinstance(error, dict) else ({"message": str(error)} if error else None),
            latency_ms=latency_ms,
            has_choice=has_choice,
            tool_calls=tuple(ToolCallPart(**calls[index]) for index in sorted(calls)),
            reasoning_details=_json_text(details or None),
            annotations=_annotations(annotations),
        )

    @property
    def billed(self) -> bool:
        return self.usage is not None

    def to_cache(self) -> dict[str, Any]:
        stored = {
            "id": self.generation_id,
            "model": self.model,
            "provider": self.provider,
            "content": self.content,
            "reasoning": self.reasoning,
            "finish_reason": self.finish_reason,
            "native_finish_reason": self.native_finish_reason,
            "usage": self.usage.as_dict() if self.usage else None,
            **({"annotations": [json.loads(item.data) for item in self.annotations]} if self.annotations else {}),
        }
        if self.tool_calls:  # a tool round's reply: replayed from the cache, it calls the same tools
            stored["tool_calls"] = [call.to_wire() for call in self.tool_calls]
            stored["reasoning_details"] = self.reasoning_details
        return stored

    @classmethod
    def from_cache(cls, stored: dict[str, Any]) -> Reply:
        usage = stored.get("usage")
        return cls(
            generation_id=stored.get("id"),
            model=stored.get("model"),
            provider=stored.get("provider"),
            content=stored.get("content"),
            reasoning=stored.get("reasoning"),
            finish_reason=stored.get("finish_reason"),
            native_finish_reason=stored.get("native_finish_reason"),
            usage=Usage(**usage) if usage else None,
            error=None,
            latency_ms=0,
            tool_calls=_tool_calls(stored.get("tool_calls")),
            reasoning_details=stored.get("reasoning_details"),
            annotations=_annotations(stored.get("annotations")),
        )


@dataclass(frozen=True)
class Annotation:
    """A note on the reply's text: a `url_citation` (web search) has its URL, title and span;
    every annotation keeps its JSON as sent in `data`."""

    type: str
    data: str
    url: str | None = None
    title: str | None = None
    start_index: int | None = None
    end_index: int | None = None

    @classmethod
    def from_body(cls, item: dict[str, Any]) -> Annotation:
        kind = str(item.get("type") or "")
        cited = item.get(kind) if isinstance(item.get(kind), dict) else item  # chat nests it, responses does not
        return cls(
            type=kind,
            data=json.dumps(item, ensure_ascii=False),
            url=_text(cited.get("url")),
            title=_text(cited.get("title")),
            start_index=_optional_int(cited.get("start_index")),
            end_index=_optional_int(cited.get("end_index")),
        )


def _tool_calls(tool_calls: Any) -> tuple[ToolCallPart, ...]:
    if not isinstance(tool_calls, list):
        return ()
    calls = []
    for call in tool_calls:
        call = call if isinstance(call, dict) else {}
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        arguments = function.get("arguments")
        calls.append(
            ToolCallPart(
                id=str(call.get("id") or ""),
                name=str(function.get("name") or "?"),
                arguments=arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False),
            )
        )
    return tuple(calls)


def _annotations(items: Any) -> tuple[Annotation, ...]:
    if not isinstance(items, list):
        return ()
    return tuple(Annotation.from_body(item) for item in items if isinstance(item, dict))


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class Generation:
    """`GET /generation?id=`: what OpenRouter recorded about one generation (a `generations` row)."""

    id: str
    total_cost_usd: float | None
    upstream_cost_usd: float | None
    cache_discount: float | None
    is_byok: bool
    provider_name: str | None
    provider_responses: str | None  # JSON text: every provider attempt with its status
    latency_ms: int | None
    generation_time_ms: int | None
    native_tokens_prompt: int | None
    native_tokens_completion: int | None
    native_tokens_reasoning: int | None
    native_tokens_cached: int | None
    finish_reason: str | None
    native_finish_reason: str | None

    @classmethod
    def from_body(cls, body: Any, generation_id: str) -> Generation | None:
        """The `data` of the answer; None when it is not a generation record."""
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            return None
        responses = data.get("provider_responses")
        return cls(
            id=str(data.get("id") or generation_id),
            total_cost_usd=_money(data.get("total_cost")),
            upstream_cost_usd=_money(data.get("upstream_inference_cost")),
            cache_discount=_money(data.get("cache_discount")),
            is_byok=data.get("is_byok") is True,
            provider_name=_text(data.get("provider_name")),
            provider_responses=json.dumps(responses, ensure_ascii=False) if responses is not None else None,
            latency_ms=_optional_int(data.get("latency")),
            generation_time_ms=_optional_int(data.get("generation_time")),
            native_tokens_prompt=_optional_int(data.get("native_tokens_prompt")),
            native_tokens_completion=_optional_int(data.get("native_tokens_completion")),
            native_tokens_reasoning=_optional_int(data.get("native_tokens_reasoning")),
            native_tokens_cached=_optional_int(data.get("native_tokens_cached")),
            finish_reason=_text(data.get("finish_reason")),
            native_finish_reason=_text(data.get("native_finish_reason")),
        )


def _optional_int(value: Any) -> int | None:
    return None if value is None else _int(value)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
