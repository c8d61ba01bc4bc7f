"""Streamed text steps (`pipeline run --stream`, `Pipeline.stream`): which steps stream, how their
request is sent, and the events a streamed record announces.

A text step (a chat step without a schema) asks with `stream: true` and hands each piece of its
reply to the hooks (`on_text_delta`) as it arrives; a step with a schema is asked as usual, since
its JSON is only worth reading whole. The response cache is shared with unstreamed runs: its key is
the body without `stream`, and a cached reply is handed on whole, as one piece.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..chat.reply import Reply
from ..chat.request import encode_body
from ..spec.model import ChatStep
from .hooks import Hooks, place
from .results import RecordResult, StepResult


@dataclass(frozen=True)
class StepStarted:
    """A step's runner started (a step skipped by `when` or a failed parent only finishes)."""

    record_key: str
    step_id: str


@dataclass(frozen=True)
class TextDelta:
    """A piece of a text step's reply, as it arrived; `item_index`: its `for_each` element (None outside a map)."""

    record_key: str
    step_id: str
    text: str
    item_index: int | None = None


@dataclass(frozen=True)
class StepFinished:
    """A step finished: ok, failed or skipped; `result` as `RecordResult.steps` will hold it."""

    record_key: str
    result: StepResult

    @property
    def step_id(self) -> str:
        return self.result.step


@dataclass(frozen=True)
class RecordFinished:
    """The record finished; always the last event."""

    result: RecordResult


StreamEvent = StepStarted | TextDelta | StepFinished | RecordFinished


def streams(step: ChatStep) -> bool:
    """A text step streams; a step with a schema is asked as usual."""
    return step.schema is None


async def ask_streamed(
    client: Any,
    body: dict[str, Any],
    step: ChatStep,
    hooks: Hooks,
    record_key: str,
    *,
    on_retry: Any = None,
    item_index: int | None = None,
) -> Reply:
    """The step's request with `stream: true`, each piece of text to `hooks.on_text_delta` as it comes."""
    _, content = encode_body({**body, "stream": True})
    where = place(item_index)
    return await client.chat_stream(
        {**body, "stream": True},
        timeout_s=step.timeout_s,
        retries=step.retries,
        content=content,
        on_text=lambda text: hooks.on_text_delta(record_key, step.id, text, **where),
        on_retry=on_retry,
    )


def show_cached(reply: Reply, step: ChatStep, hooks: Hooks, record_key: str, item_index: int | None = None) -> None:
    """A cached reply of a text step, handed on whole."""
    if reply.content:
        hooks.on_text_delta(record_key, step.id, reply.content, **place(item_index))


class EventHooks(Hooks):
    """A run's hooks as stream events, each given to `emit` as it happens."""

    def __init__(self, emit: Callable[[StreamEvent], None]) -> None:
        self._emit = emit

    def on_step_start(self, record_key: str, step_id: str) -> None:
        self._emit(StepStarted(record_key, step_id))

    def on_text_delta(self, record_key: str, step_id: str, text: str, *, item_index: int | None = None) -> None:
        self._emit(TextDelta(record_key, step_id, text, item_index))

    def on_step_end(self, record_key: str, result: StepResult) -> None:
        self._emit(StepFinished(record_key, result))

    def on_record_end(self, result: RecordResult) -> None:
        self._emit(RecordFinished(result))


class EventQueue(EventHooks):
    """Events kept in a queue, for `events` to yield while the run goes on."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue()
        super().__init__(self._queue.put_nowait)

    async def events(self, run: Awaitable[Any]) -> AsyncIterator[StreamEvent]:
        """The events as `run` announces them, until it finishes; its exception, if any, is raised after them.

        Closing the iterator early cancels the run.
        """
        task = asyncio.ensure_future(run)
        task.add_done_callback(lambda _: self._queue.put_nowait(None))
        try:
            while (event := await self._queue.get()) is not None:
                yield event
            await task
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
