"""The run's request cap and per-model rate limits, held for the whole cluster by one Ray actor.

Every worker's request gate (`ClusterGate`) takes a permit from the actor before its own slot, and
gives it back after; the actor also books the model's `rate_limit` window. A permit is held by a
block's holder name: a retried block (its worker died) first releases what the dead attempt held.
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
    a sliding window per rate-limited model."""

    def __init__(self, concurrency: int, limits: dict[str, tuple[int, float]]) -> None:
        self._free = asyncio.Semaphore(concurrency)
        self._windows = {model: SlidingWindowLimiter(*limit) for model, limit in limits.items()}
        self._held: Counter[str] = Counter()
        self._reserved: dict[str, float] = {}  # --max-cost reservations each holder has not settled
        self.in_flight = 0
        self.max_in_flight = 0

    async def acquire(self, model: str, holder: str) -> None:
        await self._free.acquire()
        self._held[holder] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        window = self._windows.get(model)
        if window is not None:
            await window.acquire()

    def release(self, holder: str) -> None:
        if self._held[holder] > 0:
            self._held[holder] -= 1
            self.in_flight -= 1
            self._free.release()

    def reserved(self, holder: str, change: float) -> None:
        """A holder's budget reservation (+) or settlement (-), as its SharedBudget reports them."""
        self._reserved[holder] = self._reserved.get(holder, 0.0) + change

    def forget(self, holder: str) -> float:
        """A block starts (again): permits its earlier attempt held when its worker died go back; what that
        attempt had reserved of the budget and never settled is returned, for the new attempt to release."""
        count = self._held.pop(holder, 0)
        for _ in range(count):
            self.in_flight -= 1
            self._free.release()
        return max(0.0, self._reserved.pop(holder, 0.0))

    def stats(self) -> dict[str, Any]:
        return {"in_flight": self.in_flight, "max_in_flight": self.max_in_flight}


class ClusterGate(RequestGate):
    """A worker's request gate: the cluster's permit (and rate window), then this worker's own slot."""

    def __init__(self, concurrency: int, limiter: Any, holder: str) -> None:
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
