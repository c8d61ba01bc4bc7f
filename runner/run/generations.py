"""Generation metadata in the background: `GET /generation` for billed replies, a bounded number at a
time, while the run goes on (`--fetch-generations`) or afterwards (`pipeline enrich`).

The lookup (the client's) retries OpenRouter's short "not found" window itself; what it finds goes to
`write` (the store's), what it never finds is counted, never faked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..chat.billing import GenerationLookup
from ..chat.reply import Generation
from ..errors import PipelineError
from .hooks import Hooks
from .results import CacheEntry, CostEvent

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 8


@dataclass(frozen=True)
class FetchTotals:
    """What a fetcher did: records found and ids OpenRouter never answered for."""

    fetched: int
    missing: tuple[str, ...]

    @property
    def asked(self) -> int:
        return self.fetched + len(self.missing)


class GenerationFetcher(Hooks):
    """Looks up each billed reply's generation record once, at most `concurrency` at a time.

    As a run's Hooks it hears every billed reply (`on_cost`); `submit` takes ids directly. `drain`
    waits for every lookup, `cancel` abandons them (a stopped run: `pipeline enrich` can finish later).
    """

    def __init__(
        self, lookup: GenerationLookup, write: Callable[[Generation], None], *, concurrency: int = DEFAULT_CONCURRENCY
    ) -> None:
        self._lookup = lookup
        self._write = write
        self._slots = asyncio.Semaphore(concurrency)
        self._seen: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        self._fetched = 0
        self._missing: list[str] = []

    def on_cost(self, event: CostEvent, entry: CacheEntry | None) -> None:
        # A cached row is not a generation; a record already looked up for the cost is stored with it.
        if not event.cached and event.generation is None:
            self.submit(event.id)

    def submit(self, generation_id: str) -> None:
        if generation_id in self._seen:
            return
        self._seen.add(generation_id)
        task = asyncio.get_running_loop().create_task(self._fetch(generation_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def submit_all(self, generation_ids: Iterable[str]) -> None:
        for generation_id in generation_ids:
            self.submit(generation_id)

    async def _fetch(self, generation_id: str) -> None:
        async with self._slots:
            try:
                found = await self._lookup.generation(generation_id)
            except PipelineError as exc:  # a refusal (401, no credits) loses the metadata, not the run
                log.warning("GET /generation?id=%s failed: %s", generation_id, exc)
                found = None
        if found is None:
            self._missing.append(generation_id)
            return
        self._fetched += 1
        self._write(found)

    async def drain(self) -> FetchTotals:
        """Wait for every lookup submitted so far (and those they make room for)."""
        while self._tasks:
            await asyncio.gather(*tuple(self._tasks))
        return self.totals()

    async def abandon(self) -> FetchTotals:
        """Cancel the lookups still waiting or in flight; what was found is kept."""
        pending = tuple(self._tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return self.totals()

    def totals(self) -> FetchTotals:
        return FetchTotals(self._fetched, tuple(self._missing))
