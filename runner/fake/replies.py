"""The bodies the fake OpenRouter sends, shaped as OpenRouter's openapi.yaml and real traffic have them.

Pure functions: openrouter.py decides what happens, this module says what it looks like on the wire.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import string
import time
from typing import Any

from ..chat.request import system_with_schema

SCHEMA_MARKER = system_with_schema(None, {}).split("\n")[0]

# What real replies name as the served model for some requested ids (dated snapshots).
DATED_IDS = {
    "anthropic/claude-sonnet-4.5": "anthropic/claude-4.5-sonnet-20250929",
    "anthropic/claude-haiku-4.5": "anthropic/claude-4.5-haiku-20251001",
    "openai/gpt-4o-mini": "openai/gpt-4o-mini-2024-07-18",
    "openai/gpt-5-mini": "openai/gpt-5-mini-2025-08-07",
}
BYOK_FEE_FRACTION = 0.05  # OpenRouter's fee on a bring-your-own-key request, of what it would have cost
PLUGIN_FEE_USD = 0.02  # e.g. the web plugin: 5 results at $4 per 1000

_PROVIDERS = {"google": "Google AI Studio", "anthropic": "Anthropic", "openai": "OpenAI"}
# Another provider of the same models, tried first when a reply comes after a provider fallback.
_SECOND_PROVIDERS = {"Google AI Studio": "Google", "Anthropic": "Amazon Bedrock", "OpenAI": "Azure"}
# finish_reason -> the provider's own word for it (Gemini's enum, Anthropic's stop_reason, OpenAI's status).
_NATIVE_FINISH = {
    "Google AI Studio": {
        "stop": "STOP",
        "length": "MAX_TOKENS",
        "tool_calls": "STOP",
        "content_filter": "SAFETY",
        "error": "OTHER",
    },
    "Anthropic": {
        "stop": "end_turn",
        "length": "max_tokens",
        "tool_calls": "tool_use",
        "content_filter": "refusal",
        "error": "error",
    },
    "OpenAI": {
        "stop": "completed",
        "length": "max_output_tokens",
        "tool_calls": "completed",
        "content_filter": "content_filter",
        "error": "failed",
    },
}
_ID_CHARS = string.ascii_letters + string.digits
_ID_TABLE = bytes(ord(_ID_CHARS[byte % len(_ID_CHARS)]) for byte in range(256))


def new_generation_id() -> str:
    """`gen-<unix time>-<20 random letters and digits>`: unique across instances and processes, as real ids are."""
    return f"gen-{int(time.time())}-{os.urandom(20).translate(_ID_TABLE).decode('ascii')}"


def provider_of(model: str) -> str:
    return _PROVIDERS.get(model.split("/")[0], "DeepInfra")


def native_finish_reason(model: str, finish_reason: str) -> str:
    """The provider's own finish reason; OpenAI's older chat models still say `stop`/`length`."""
    provider = provider_of(model)
    if provider == "OpenAI" and not model.startswith(("openai/gpt-5", "openai/o")):
        return finish_reason
    return _NATIVE_FINISH.get(provider, {}).get(finish_reason, finish_reason)


def usage(
    prompt_tokens: int,
    completion_tokens: int,
    reasoning_tokens: int,
    *,
    prompt_cost: float,
    completion_cost: float,
    cost: float,
    is_byok: bool,
) -> dict[str, Any]:
    """`usage` of a chat completion: tokens, what OpenRouter charged, what the provider charged."""
    body: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "cost": cost,
        "is_byok": is_byok,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0, "audio_tokens": 0},
        "cost_details": {
            "upstream_inference_cost": round(prompt_cost + completion_cost, 12),
            "upstream_inference_prompt_cost": prompt_cost,
            "upstream_inference_completions_cost": completion_cost,
        },
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens, "image_tokens": 0},
    }
    return body


def without_cost(usage_body: dict[str, Any]) -> dict[str, Any]:
    """`usage` as some real replies have it: tokens but no `cost` (the generation record has it)."""
    return {key: value for key, value in usage_body.items() if key not in ("cost", "cost_details")}


def generation(
    generation_id: str,
    *,
    model: str,
    usage_body: dict[str, Any],
    finish_reason: str | None,
    native_finish: str | None,
    latency_ms: int,
    user: str | None,
    failed_first: int | None = None,
) -> dict[str, Any]:
    """What `GET /generation?id=` answers under `data` (every field openapi.yaml requires); `failed_first`:
    the HTTP status of another provider OpenRouter tried before the one that answered."""
    provider = provider_of(model)
    total_cost = usage_body["cost"]
    details = usage_body.get("completion_tokens_details") or {}
    upstream = (usage_body.get("cost_details") or {}).get("upstream_inference_cost")
    is_byok = bool(usage_body.get("is_byok"))
    return {
        "id": generation_id,
        "upstream_id": f"chatcmpl-{secrets.token_hex(12)}",
        "request_id": f"req-{int(time.time())}-{secrets.token_hex(10)}",
        "total_cost": total_cost,
        "usage": total_cost,
        "upstream_inference_cost": upstream if upstream is not None else total_cost,
        "cache_discount": None,
        "is_byok": is_byok,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(),
        "model": model,
        "app_id": None,
        "streamed": False,
        "cancelled": False,
        "provider_name": provider,
        "latency": latency_ms,
        "moderation_latency": None,
        "generation_time": latency_ms,
        "finish_reason": finish_reason,
        "native_finish_reason": native_finish,
        "service_tier": None,
        "tokens_prompt": usage_body["prompt_tokens"],
        "tokens_completion": usage_body["completion_tokens"],
        "native_tokens_prompt": usage_body["prompt_tokens"],
        "native_tokens_completion": usage_body["completion_tokens"],
        "native_tokens_completion_images": 0,
        "native_tokens_reasoning": details.get("reasoning_tokens", 0),
        "native_tokens_cached": (usage_body.get("prompt_tokens_details") or {}).get("cached_tokens", 0),
        "num_media_prompt": 0,
        "num_input_audio_prompt": 0,
        "num_media_completion": 0,
        "num_search_results": 0,
        "num_fetches": 0,
        "web_search_engine": None,
        "origin": "",
        "external_user": user,
        "api_type": "completions",
        "preset_id": None,
        "router": None,
        "session_id": None,
        "provider_responses": [
            *(
                [
                    {
                        "provider_name": _SECOND_PROVIDERS.get(provider, "Together"),
                        "status": failed_first,
                        "model_permaslug": model,
                        "is_byok": is_byok,
                        "latency": 0,
                    }
                ]
                if failed_first is not None
                else []
            ),
            {
                "provider_name": provider,
                "status": 200,
                "model_permaslug": model,
                "is_byok": is_byok,
                "latency": latency_ms,
            },
        ],
        "user_agent": None,
        "http_referer": None,
        "data_region": "global",
        "workspace_id": None,
    }


DEFAULT_MESSAGES = {
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


def error_body(status: int, message: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message}
    if metadata is not None:
        error["metadata"] = metadata
    return {"error": error}


def upstream_metadata(status: int, model: str) -> dict[str, Any]:
    """`metadata` of an error an upstream provider returned: its raw text and its name."""
    provider = provider_of(model)
    if status == 429:
        raw = f"{model} is temporarily rate-limited upstream. Please retry shortly."
    else:
        raw = f'{{"error":{{"code":{status},"message":"upstream {provider} failed","status":"UNAVAILABLE"}}}}'
    return {"raw": raw, "provider_name": provider}


def moderation_metadata(reasons: tuple[str, ...], prompt_text: str, model: str) -> dict[str, Any]:
    """`metadata` of a 403 moderation refusal: the categories and the flagged part of the input."""
    flagged = prompt_text if len(prompt_text) <= 100 else prompt_text[:100] + "..."
    return {
        "reasons": list(reasons),
        "flagged_input": flagged,
        "provider_name": provider_of(model),
        "model_slug": model,
    }


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def tokens(text: str) -> int:
    return max(1, len(text) // 4)


def requested_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return (response_format.get("json_schema") or {}).get("schema") or {}
    for message in body.get("messages") or ():
        text = text_of(message.get("content"))
        if message.get("role") == "system" and SCHEMA_MARKER in text:
            try:
                return json.loads(text.split(SCHEMA_MARKER, 1)[1].strip())
            except json.JSONDecodeError:
                return {}
    return {} if response_format.get("type") == "json_object" else None


def mock_text(model: str, messages: list[dict[str, Any]]) -> str:
    last = text_of(messages[-1].get("content")) if messages else ""
    words = " ".join(last.split()[:12])
    return f"[mock reply from {model}] {words}"
