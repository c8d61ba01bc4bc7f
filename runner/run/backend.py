"""Where records run: the RecordExecutor interface, and the local backend that runs them on this
event loop. Another backend (a process pool, Ray workers each with their own Session joined by the
run id) implements the same two methods."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

from .batch import stream_records
from .inputs import InputItem
from .record import RecordRunner
from .results import RecordResult


class RecordExecutor(Protocol):
    async def run_record(self, record: Mapping[str, Any], *, key: str | int, user_id: str | None) -> RecordResult:
        """One checked record through the pipeline."""
        ...

    def run_records(
        self, run_one: Callable[[InputItem], Awaitable[RecordResult]], items: AsyncIterator[InputItem], *, ordered: bool
    ) -> AsyncIterator[list[RecordResult]]:
        """Many records, each through `run_one` (the session's: resume, input check, then `run_record`);
        results in batches of those that finished together, in input order with `ordered`."""
        ...


class LocalBackend:
    """Records on this event loop: a window of a few times the request concurrency in flight."""

    def __init__(
        self,
        records: RecordRunner,
        *,
        concurrency: int,
        window: int | None = None,
        admit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._records = records
        self._concurrency = concurrency
        self._window = window  # records in flight; None: a few times the concurrency
        self._admit = admit  # awaited before a record starts: the request gate's room for more

    async def run_record(self, record: Mapping[str, Any], *, key: str | int, user_id: str | None) -> RecordResult:
        return await self._records.run_record(record, key=key, user_id=user_id)

    def run_records(
        self, run_one: Callable[[InputItem], Awaitable[RecordResult]], items: AsyncIterator[InputItem], *, ordered: bool
    ) -> AsyncIterator[list[RecordResult]]:
        window = self._window or max(8, self._concurrency * (4 if ordered else 2))
        return stream_records(run_one, items, window=window, ordered=ordered, admit=self._admit)
