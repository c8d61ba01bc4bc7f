"""A streamed chat reply (`stream: true`): OpenRouter's Server-Sent Events read line by line, each
piece of text handed on as it arrives, and the reply the chunks add up to (Reply.from_stream);
`StreamingClient` is the OpenRouterClient that asks for one.

The events are SSE as the WHATWG spec has them: `data:` lines (several in one event are joined by
newlines), a blank line ending an event, other fields ignored, and comments (`: OPENROUTER
PROCESSING`, sent to keep the connection open) skipped. `data: [DONE]` ends the stream; an error
chunk (`error` with `finish_reason: "error"`) ends it too, and becomes the reply's error, judged
like an error inside a 200 body. The usage (and its cost) comes in the last chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

import httpx

from ..errors import TransientError
from .client import OnRetry, OpenRouterClient, _classify, _encode, _parse, _transport_failure
from .failures import HANDLED, Failure, TransportFailure
from .reply import Reply

DONE = "[DONE]"


async def sse_data(lines: AsyncIterable[str]) -> AsyncIterator[str]:
    """The data of each event in turn, until `[DONE]`; a stream that stops before it is a broken one."""
    data: list[str] = []
    async for line in lines:
        if not line:  # a blank line dispatches the event
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):  # a comment: keep-alive
            continue
        name, _, value = line.partition(":")
        if name != "data":
            continue  # event:, id:, retry: mean nothing here
        value = value.removeprefix(" ")
        if value == DONE and not data:
            return
        data.append(value)
    raise TransportFailure("the stream ended before `data: [DONE]`", Failure.CONNECTION, status=200)


def chunk_text(chunk: dict[str, Any]) -> str:
    """The text a chunk adds to the reply's content ('' when it adds none)."""
    choices = chunk.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    delta = choice.get("delta")
    text = delta.get("content") if isinstance(delta, dict) else None
    return text if isinstance(text, str) else ""


async def read_reply(lines: AsyncIterable[str], on_text: Callable[[str], None], started: float) -> Reply:
    """Read a 200 stream to its end: each piece of text to `on_text` at once, then the whole reply.

    `started` is the `time.perf_counter()` of the request, for the reply's latency.
    """
    chunks: list[dict[str, Any]] = []
    async for data in sse_data(lines):
        try:
            chunk = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            chunk = None
        if not isinstance(chunk, dict):
            raise TransportFailure(f"a stream event that is not a JSON object: {data[:80]!r}", Failure.PROTOCOL)
        chunks.append(chunk)
        text = chunk_text(chunk)
        if text:
            on_text(text)
        if chunk.get("error"):
            break  # OpenRouter ends the stream after an error chunk
    return Reply.from_stream(chunks, int((time.perf_counter() - started) * 1000))


class StreamingClient(OpenRouterClient):
    """OpenRouterClient with `chat_stream`: the same connection, headers, gate and retry policy."""

    async def chat_stream(
        self,
        body: dict[str, Any],
        *,
        timeout_s: float,
        retries: int,
        on_text: Callable[[str], None],
        content: bytes | None = None,
        on_retry: OnRetry | None = None,
    ) -> Reply:
        """POST /chat/completions with `stream: true` (the body says so): each piece of text goes to
        `on_text` as it arrives; returns the reply the chunks add up to, or raises like `chat`.

        Retried like `chat`, but only until the first piece of text: a stream that breaks after it is
        a TransientError at once, since the text was already handed on.
        """
        model = body.get("model") or ""
        content = content or _encode(body)
        return await self.retried(
            lambda: self._post_stream(model, content, timeout_s, on_text), model, retries, on_retry
        )

    async def _post_stream(self, model: str, content: bytes, timeout_s: float, on_text: Callable[[str], None]) -> Reply:
        shown = False

        def show(text: str) -> None:
            nonlocal shown
            shown = True
            on_text(text)

        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 15.0))
        headers = {"Accept": "text/event-stream"}
        request = self._http.build_request("POST", self._chat_url, content=content, timeout=timeout, headers=headers)
        gate = self._gate
        try:
            # The whole stream counts against the step's timeout, and holds its request slot throughout.
            async with gate.slot(model) if gate else contextlib.nullcontext(), asyncio.timeout(timeout_s):
                started = time.perf_counter()
                response = await self._http.send(request, stream=True)
                try:
                    if response.status_code != 200:
                        if gate and response.status_code == 429:
                            gate.throttled(model)
                        payload = _parse(await response.aread())
                        raise _classify(response.status_code, payload, response.headers, model or None)
                    if gate:
                        gate.succeeded(model)
                    return await read_reply(response.aiter_lines(), show, started)
                finally:
                    await response.aclose()
        except HANDLED as exc:
            failure = _transport_failure(exc, timeout_s)
        except TransportFailure as exc:
            failure = exc
        if shown:
            raise TransientError(f"{model}: the stream broke after its first text ({failure.description})", model=model)
        raise failure
