"""The run's request cap and per-model rate limits, held for the whole cluster by one Ray actor.

Every worker's request gate (`ClusterGate`) takes a permit from the actor before its own slot, and
gives it back after; the actor also books the model's `rate_limit` window. A permit is held by a
block's attempt: a retried block (its worker died) first takes back what the dead attempt held.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from ..chat.flow import RequestGate, SlidingWindowLimiter
from ..spec.model import PipelineSpec


def rate_limits(spec: PipelineSpec) -> dict[str, tuple[int, float]]:
    """Each model's rate limit as the chat runner applies it: the first step naming the model sets it."""
    limits: dict[str, tuple[int, float]] = {}
    for step in spec.steps:
        limit = getattr(step, "rate_limit", None)
        if limit is not None:
            for model in step.models:
                limits.setdefault(model, (limit.requests, limit.per_seconds))
    return limits


class Limiter:
    """The actor's state (made a Ray actor by `runner.cluster.backend`): permits under a global cap,
    a sliding window per rate-limited model, and what each attempt at a block holds.

    A block whose worker died runs again as a new attempt: `begin` gives back the dead attempt's
    permits and returns its unsettled reservations, and its requests still queued here (the
    worker died waiting) are turned away when their turn comes, so they take nothing."""

    def __init__(self, concurrency: int, limits: dict[str, tuple[int, float]]) -> None:
        self._free = asyncio.Semaphore(concurrency)
        self._windows = {model: SlidingWindowLimiter(*limit) for model, limit in limits.items()}
        self._held: Counter[str] = Counter()  # permits by attempt
        self._reserved: dict[str, float] = {}  # --max-cost reservations each attempt has not settled
        self._attempts: dict[str, str] = {}  # block -> its current attempt
        self._dead: set[str] = set()
        self.in_flight = 0
        self.max_in_flight = 0

    def begin(self, block: str, attempt: str) -> float:
        """An attempt at `block` starts; an earlier one died: its permits go back, and what it had reserved
        of the budget and never settled is returned, for the new attempt to release."""
        leaked = 0.0
        earlier = self._attempts.get(block)
        if earlier is not None:
            self._dead.add(earlier)
            for _ in range(self._held.pop(earlier, 0)):
                self.in_flight -= 1
                self._free.release()
            leaked = max(0.0, self._reserved.pop(earlier, 0.0))
        self._attempts[block] = attempt
        return leaked

    async def acquire(self, model: str, attempt: str) -> None:
        await self._free.acquire()
        if attempt in self._dead:  # asked for by a worker that has died since: nobody will give it back
            self._free.release()
            return
        self._held[attempt] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        window = self._windows.get(model)
        if window is not None:
            await window.acquire()

    def release(self, attempt: str) -> None:
        if self._held[attempt] > 0:
            self._held[attempt] -= 1
            self.in_flight -= 1
            self._free.release()

    def reserved(self, attempt: str, change: float) -> None:
        """An attempt's budget reservation (+) or settlement (-), as its SharedBudget reports them."""
        if attempt not in self._dead:
            self._reserved[attempt] = self._reserved.get(attempt, 0.0) + change

    def stats(self) -> dict[str, Any]:
        return {"in_flight": self.in_flight, "max_in_flight": self.max_in_flight}


class ClusterGate(RequestGate):
    """A worker's request gate: the cluster's permit (and rate window), then this worker's own slot."""

    def __init__(self, concurrency: int, limiter: Any, holder: str) -> None:  # holder: the block's attempt
        super().__init__(concurrency)
        self._limiter = limiter  # the actor's handle
        self._holder = holder

    def slot(self, model: str) -> _ClusterSlot:
        return _ClusterSlot(self, model, super().slot(model))


class _ClusterSlot:
    __slots__ = ("_gate", "_local", "_model")

    def __init__(self, gate: ClusterGate, model: str, local: Any) -> None:
        self._gate, self._model, self._local = gate, model, local

    async def __aenter__(self) -> None:
        gate = self._gate
        granted = asyncio.ensure_future(gate._limiter.acquire.remote(self._model, gate._holder))
        try:
            await asyncio.shield(granted)
        except asyncio.CancelledError:  # the permit may still be granted: give it back when it is
            granted.add_done_callback(lambda done: _give_back(gate, done))
            raise
        try:
            await self._local.__aenter__()
        except BaseException:
            gate._limiter.release.remote(gate._holder)
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        await self._local.__aexit__(*exc_info)
        self._gate._limiter.release.remote(self._gate._holder)


def _give_back(gate: ClusterGate, granted: asyncio.Future) -> None:
    if not granted.cancelled() and granted.exception() is None:
        gate._limiter.release.remote(gate._holder)
