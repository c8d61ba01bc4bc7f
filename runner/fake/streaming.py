"""The fake's streamed replies: a completion body told as OpenRouter streams it (`stream: true`).

Server-Sent Events, each sent `delay_s` after the one before: a `: OPENROUTER PROCESSING` comment
while the provider "thinks", a first chunk with the assistant role, the reasoning and the content in
word-sized pieces (`choices[0].delta`), the tool calls, a chunk with the finish reason, a last chunk
with the usage (`choices: []`), then `data: [DONE]`. A reply with an error (Fault "stream_error",
"error_in_body", "choice_error") breaks off halfway through its text with an error chunk (`error`
at the top level, `finish_reason: "error"`, the usage so far) and no `[DONE]`, as OpenRouter ends a
stream whose provider failed after the headers were sent.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

PROCESSING = ": OPENROUTER PROCESSING\n\n"
DONE = "data: [DONE]\n\n"


def streamed(response: Any, request: dict[str, Any], delay_s: float) -> Any:
    """The FakeResponse as a stream of events when the request asked for one and it is a 200 completion."""
    if not request.get("stream") or response.status != 200 or not isinstance(response.body, dict):
        return response
    return replace(response, body=None, events=events(response.body), event_delay_s=delay_s)


def events(body: dict[str, Any]) -> tuple[str, ...]:
    """The SSE events of one completion body, in order."""
    head = {key: body[key] for key in ("id", "provider", "model", "created", "system_fingerprint") if key in body}
    head["object"] = "chat.completion.chunk"

    def chunk(delta: dict[str, Any] | None, finish: str | None = None, native: str | None = None, **extra: Any) -> str:
        choices = [] if delta is None else [_choice(delta, finish, native)]
        return f"data: {json.dumps({**head, 'choices': choices, **extra}, ensure_ascii=False)}\n\n"

    choices = body.get("choices") or []
    choice = choices[0] if choices else {}
    message = choice.get("message") or {}
    error = body.get("error") or choice.get("error")
    usage = {"usage": body["usage"]} if "usage" in body else {}
    sent = [PROCESSING]
    if not choice:  # billed with no choices: only the usage
        return (*sent, chunk(None, **usage), DONE)
    sent.append(chunk({"role": "assistant", "content": ""}))
    sent.extend(chunk({"reasoning": piece}) for piece in _pieces(message.get("reasoning")))
    pieces = _pieces(message.get("content"))
    if error is not None:
        sent.extend(chunk({"content": piece}) for piece in pieces[: len(pieces) // 2])
        native = choice.get("native_finish_reason")
        return (*sent, chunk({"content": ""}, "error", native, error=error, **usage))
    sent.extend(chunk({"content": piece}) for piece in pieces[:1])
    sent.append(PROCESSING)  # OpenRouter's keep-alive may come at any point
    sent.extend(chunk({"content": piece}) for piece in pieces[1:])
    calls = message.get("tool_calls") or []
    if calls:
        sent.append(chunk({"tool_calls": [{"index": index, **call} for index, call in enumerate(calls)]}))
    if message.get("annotations"):
        sent.append(chunk({"annotations": message["annotations"]}))
    sent.append(chunk({}, choice.get("finish_reason"), choice.get("native_finish_reason")))
    return (*sent, chunk(None, **usage), DONE)


def _choice(delta: dict[str, Any], finish: str | None, native: str | None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "finish_reason": finish, "native_finish_reason": native, "logprobs": None}


def _pieces(text: Any) -> list[str]:
    """Text in word-sized pieces, as tokens arrive ('' has none)."""
    if not isinstance(text, str) or not text:
        return []
    return re.findall(r"\s*\S+\s*", text) or [text]
