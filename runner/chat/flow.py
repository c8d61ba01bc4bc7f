"""How many requests may be in flight and how fast they may start.

A global cap, and a per-model cap that backs off on 429. The per-model cap follows AIMD: a 429
halves it (at most once per cool-down, so a burst of 429s counts once), and every `cap`
successful replies raise it by one, up to the global cap. `rate_limit` is a sliding window.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# Among requests waiting for a place, the lowest priority goes first, then the earliest. The record runner
# sets its record's order here: a record's later steps overtake newer records' first steps, so records
# finish in the order they started and a run stopped by a kill or the budget keeps whole records.
request_priority: ContextVar[int] = ContextVar("request_priority", default=0)
_arrivals = itertools.count()


@dataclass
class _Lane:
    gate: RequestGate
    cap: int
    active: int = 0
    successes: int = 0
    last_cut: float = float("-inf")
    waiting: list[tuple[int, int, asyncio.Future]] = field(default_factory=list)  # a heap: (priority, arrival, waiter)

    def wake(self) -> None:
        """Hand free places to waiters, the first by priority then arrival; a woken waiter already holds its
        place, so a burst of releases wakes one waiter each, never the whole queue to race for them."""
        while self.active < self.cap and self.waiting:
            waiter = heapq.heappop(self.waiting)[2]
            if not waiter.done():  # a cancelled waiter left the queue's count when it was cancelled
                self.active += 1
                waiter.set_result(None)
                self.gate.left_queue()


class RequestGate:
    def __init__(
        self, concurrency: int, *, cool_down_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self._global = asyncio.Semaphore(concurrency)
        self._lanes: dict[str, _Lane] = {}
        self._cool_down_s = cool_down_s
        self._clock = clock
        self.in_flight = 0
        self.max_in_flight = 0
        self.queued = 0  # requests waiting for a place, all lanes
        self._room: list[asyncio.Future] = []  # those waiting in room() for the load to fall
        self.entered = 0  # requests that asked for a place
        self._fresh = 0  # records started in this loop turn, their requests not yet in line
        self._settled = 0  # records started before, whose first requests have had their turn

    def cap(self, model: str) -> int:
        return self._lane(model).cap

    def _lane(self, model: str) -> _Lane:
        lane = self._lanes.get(model)
        if lane is None:
            lane = self._lanes[model] = _Lane(self, cap=self.concurrency)
        return lane

    async def room(self) -> None:
        """Wait until the run can use another record's requests; the record window asks before each record.

        The load is what is in flight plus what waits in line, and records start while it stays under
        two caps' worth: with `for_each` a record is many requests, and records started only to wait in
        line add memory and garbage-collector time, and a burst of setting them all up keeps the loop
        from reading replies. A record's requests join the line a loop turn or two after it starts, so
        records started in this turn count at the requests a record has made on average so far (the
        first one alone until that is known), and the loop goes round twice before more are counted.
        """
        limit = 2 * self.concurrency
        while True:
            load = self.queued + self.in_flight
            if not self._fresh:
                if load < limit:
                    break
                waiter = asyncio.get_running_loop().create_future()
                self._room.append(waiter)
                await waiter
                continue
            if self._settled and load + self._fresh * max(1.0, self.entered / self._settled) < limit:
                break
            await asyncio.sleep(0)  # the records' tasks run, then their elements' tasks join the line
            await asyncio.sleep(0)
            self._settled += self._fresh
            self._fresh = 0
        self._fresh += 1

    def left_queue(self) -> None:
        self.queued -= 1
        if self._room:
            self.open_room()

    def open_room(self) -> None:
        """Wake room()'s waiters once the load is under two caps (a request left the line or finished)."""
        if self.queued + self.in_flight < 2 * self.concurrency:
            for waiter in self._room:
                if not waiter.done():
                    waiter.set_result(None)
            self._room.clear()

    def slot(self, model: str) -> _Slot:
        """`async with gate.slot(model):` holds one request's place in the run's cap and in the model's lane."""
        return _Slot(self, self._lane(model))

    def throttled(self, model: str) -> None:
        """A 429 from this model: halve its cap."""
        lane = self._lane(model)
        now = self._clock()
        if now - lane.last_cut < self._cool_down_s:
            return
        lane.last_cut = now
        lane.successes = 0
        if lane.cap > 1:
            log.info("model %s is rate limited: concurrency %d -> %d", model, lane.cap, max(1, lane.cap // 2))
        lane.cap = max(1, lane.cap // 2)

    def succeeded(self, model: str) -> None:
        """A reply from this model: recover its cap one step at a time."""
        lane = self._lane(model)
        if lane.cap >= self.concurrency:
            return
        lane.successes += 1
        if lane.successes >= lane.cap:
            lane.successes = 0
            lane.cap += 1
            lane.wake()


class _Slot:
    """One request's place: a plain async context manager (the hot path: one per call, no generator)."""

    __slots__ = ("_gate", "_lane")

    def __init__(self, gate: RequestGate, lane: _Lane) -> None:
        self._gate = gate
        self._lane = lane

    async def __aenter__(self) -> None:
        lane = self._lane
        self._gate.entered += 1
        if lane.active < lane.cap and not lane.waiting:
            lane.active += 1
        else:  # in line behind the others: wake() gives this request its place
            waiter = asyncio.get_running_loop().create_future()
            heapq.heappush(lane.waiting, (request_priority.get(), next(_arrivals), waiter))
            self._gate.queued += 1
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.cancelled():  # still in the heap, skipped when its turn comes
                    self._gate.left_queue()
                else:  # woken, then cancelled before it ran: its place goes to the next
                    lane.active -= 1
                    lane.wake()
                raise
        gate = self._gate
        waits = gate._global.locked()  # its model has room but the run's cap is full: in line all the same
        if waits:
            gate.queued += 1
        try:
            await gate._global.acquire()
        except BaseException:
            lane.active -= 1
            lane.wake()
            raise
        finally:
            if waits:
                gate.left_queue()
        gate.in_flight += 1
        if gate.in_flight > gate.max_in_flight:
            gate.max_in_flight = gate.in_flight

    async def __aexit__(self, *exc_info: object) -> None:
        gate, lane = self._gate, self._lane
        gate.in_flight -= 1
        gate._global.release()
        lane.active -= 1
        lane.wake()
        if gate._room:  # a model's lane may be held back while the others finish: the load fell all the same
            gate.open_room()


class SlidingWindowLimiter:
    """At most `requests` starts in any window of `per_seconds` seconds, the first window included (no burst).

    Each caller is given the earliest start that keeps the window's count, in arrival order, and sleeps
    until then. A start is booked when it is given, so a caller cancelled while waiting still counts.
    """

    def __init__(
        self,
        requests: int,
        per_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if requests < 1 or per_seconds <= 0:
            raise ValueError("a rate limit needs requests >= 1 and per_seconds > 0")
        self.requests = requests
        self.per_seconds = per_seconds
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque(maxlen=requests)  # the latest booked starts

    async def acquire(self) -> None:
        now = self._clock()
        start = now
        if len(self._starts) == self.requests:
            # The start `requests` places back must have left the window before this one begins.
            start = max(now, self._starts[0] + self.per_seconds)
        self._starts.append(start)
        if start > now:
            await self._sleep(start - now)
