"""Generation metadata in the background: `GET /generation` for billed replies, a bounded number at a
time, while the run goes on (`--fetch-generations`) or afterwards (`pipeline enrich`).

The lookup (a client of its own) retries OpenRouter's short "not found" window itself, waiting with
the fetcher's `pause`, which gives the slot back while it waits: the bound is on requests in flight,
not on ids waiting to be indexed. What it finds goes to `write` (the store's); what it never finds is
counted, never faked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

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


class GenerationSource(GenerationLookup, Protocol):
    async def aclose(self) -> None: ...


class GenerationFetcher(Hooks):
    """Looks up each billed reply's generation record once, at most `concurrency` requests at a time.

    `connect(pause)` opens the lookup (a client whose waits are `pause`); the fetcher closes it. As a
    run's Hooks it hears every billed reply (`on_cost`); `submit` takes ids directly. `drain` waits for
    every lookup, `abandon` cancels them (a stopped run: `pipeline enrich` can finish later).
    """

    def __init__(
        self,
        connect: Callable[[Callable[[float], Awaitable[None]]], GenerationSource],
        write: Callable[[Generation], None],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self._lookup = connect(self.pause)
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

    async def pause(self, seconds: float) -> None:
        """The lookup's wait between "not found" answers, with the slot given back meanwhile."""
        self._slots.release()
        try:
            await asyncio.sleep(seconds)
        finally:
            await self._slots.acquire()  # held again when the lookup goes on (or ends: _fetch releases it)

    async def _fetch(self, generation_id: str) -> None:
        await self._slots.acquire()
        try:
            found = await self._lookup.generation(generation_id)
        except PipelineError as exc:  # a refusal (401, no credits) loses the metadata, not the run
            log.warning("GET /generation?id=%s failed: %s", generation_id, exc)
            found = None
        finally:
            self._slots.release()
        if found is None:
            self._missing.append(generation_id)
            return
        self._fetched += 1
        self._write(found)

    async def drain(self) -> FetchTotals:
        """Wait for every lookup submitted so far, then close the lookup's client."""
        try:
            while self._tasks:
                await asyncio.gather(*tuple(self._tasks))
        finally:
            await self._lookup.aclose()
        return self.totals()

    async def abandon(self) -> FetchTotals:
        """Cancel the lookups still waiting or in flight; what was found is kept."""
        pending = tuple(self._tasks)
        for task in pending:
            task.cancel()
        try:
            await asyncio.gather(*pending, return_exceptions=True)
        finally:
            await self._lookup.aclose()
        return self.totals()

    def totals(self) -> FetchTotals:
        return FetchTotals(self._fetched, tuple(self._missing))
