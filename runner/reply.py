"""What OpenRouter answered: a chat reply and its usage, parsed from the response body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0

    @classmethod
    def from_body(cls, usage: dict[str, Any]) -> Usage:
        prompt_details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        prompt = _int(usage.get("prompt_tokens"))
        completion = _int(usage.get("completion_tokens"))
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            reasoning_tokens=_int(completion_details.get("reasoning_tokens")),
            cached_tokens=_int(prompt_details.get("cached_tokens")),
            total_tokens=_int(usage.get("total_tokens")) or prompt + completion,
            cost_usd=float(usage.get("cost") or 0.0),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cached_tokens": self.cached_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": self.cost_usd,
        }


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0


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
        )

    @property
    def billed(self) -> bool:
        return self.usage is not None

    def to_cache(self) -> dict[str, Any]:
        return {
            "id": self.generation_id,
            "model": self.model,
            "provider": self.provider,
            "content": self.content,
            "reasoning": self.reasoning,
            "finish_reason": self.finish_reason,
            "native_finish_reason": self.native_finish_reason,
            "usage": self.usage.as_dict() if self.usage else None,
        }

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
        )
