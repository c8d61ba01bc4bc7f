"""Request flow: the global and per-model caps, slow-down on 429, rate limits, shared budgets, progress output."""

from __future__ import annotations

import asyncio
import io
import time

from runner.api import load_pipeline
from runner.chat.flow import RequestGate, SlidingWindowLimiter
from runner.chat.reply import Usage
from runner.fake import FakeOpenRouter
from runner.fake.server import mock_transport
from runner.report.progress import RunProgress
from runner.run.results import CostEvent, RecordResult
from runner.spec.model import EMPTY

from .conftest import write_pipeline


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_429_halves_the_model_cap_once_per_cool_down_then_it_recovers():
    clock = Clock()
    gate = RequestGate(16, cool_down_s=1.0, clock=clock)
    gate.throttled("m")
    assert gate.cap("m") == 8
    gate.throttled("m")  # the same burst of 429s
    assert gate.cap("m") == 8
    clock.now = 2.0
    gate.throttled("m")
    assert gate.cap("m") == 4 and gate.cap("other") == 16
    for _ in range(4):
        gate.succeeded("m")
    assert gate.cap("m") == 5  # one step up after `cap` good replies
    for _ in range(200):
        gate.succeeded("m")
    assert gate.cap("m") == 16  # never above the global cap


def test_slots_respect_the_model_cap_and_the_global_cap():
    async def scenario():
        gate = RequestGate(4)
        gate.throttled("slow")  # cap 2 for "slow"
        active = {"slow": 0, "fast": 0}
        peak = {"slow": 0, "fast": 0}

        async def call(model):
            async with gate.slot(model):
                active[model] += 1
                peak[model] = max(peak[model], active[model])
                await asyncio.sleep(0.01)
                active[model] -= 1

        await asyncio.gather(*(call("slow") for _ in range(6)), *(call("fast") for _ in range(6)))
        return gate, peak

    gate, peak = asyncio.run(scenario())
    assert peak["slow"] == 2
    assert gate.max_in_flight == 4


def _most_in_any_window(times: list[float], window_s: float) -> int:
    times = sorted(times)
    return max(sum(1 for later in times[index:] if later - start < window_s) for index, start in enumerate(times))


def test_sliding_window_allows_no_burst_in_any_window():
    clock, woken = Clock(), []

    async def fake_sleep(delay: float) -> None:
        woken.append(clock.now + delay)

    async def scenario():
        limiter = SlidingWindowLimiter(5, 0.5, clock=clock, sleep=fake_sleep)
        await asyncio.gather(*(limiter.acquire() for _ in range(12)))
        clock.now = 0.7
        await limiter.acquire()

    asyncio.run(scenario())
    starts = [0.0] * 5 + woken
    assert woken[:7] == [0.5] * 5 + [1.0] * 2 and woken[7] == 1.0
    assert _most_in_any_window(starts, 0.5) == 5


def test_rate_limit_holds_at_the_fake_from_the_first_window(tmp_path, settings):
    arrivals: list[float] = []
    fake = FakeOpenRouter(on_chat_body=lambda body: arrivals.append(time.monotonic()))
    path = write_pipeline(
        tmp_path,
        "name: limited\ndefaults:\n  model: google/gemini-2.5-flash-lite\n  rate_limit: {requests: 5, per_seconds: 0.5}\n"
        "steps:\n  a:\n    prompt: '{{ input.text }}'\n",
    )
    pipeline = load_pipeline(path)

    async def run_all():
        records = ({"text": f"t{i}"} for i in range(10))
        return [
            r
            async for r in pipeline.run_many(records, concurrency=10, settings=settings, transport=mock_transport(fake))
        ]

    results = asyncio.run(run_all())
    assert all(result.status == "ok" for result in results) and len(arrivals) == 10
    # aiolimiter let about 10 through in the first half second; the window allows 5 (0.45 s: scheduling slack).
    assert _most_in_any_window(arrivals, 0.45) == 5


def test_plain_progress_lines_when_stderr_is_not_a_terminal():
    """The progress display is a run's hook: it counts what the session announces."""
    stream = io.StringIO()
    progress = RunProgress(total_records=10, stream=stream, every_s=0.0)
    usage = Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15, cost_usd=0.0123)
    for cached in (False, True, True):
        progress.on_cost(
            CostEvent("g", "run", "1", "s", "m", "x/y", "x/y", None, usage, None, 1, "ok", cached, 5, "now"), None
        )
    for status in ("ok", "ok", "ok", "failed"):
        progress.on_record_end(RecordResult(1, status, None, EMPTY))
    progress.close()
    line = stream.getvalue().splitlines()[-1]
    assert line.startswith("progress: 4 records done, 1 failed")
    assert "2 cached" in line and "$0.0123" in line


class Ledger:
    """A budgets row in memory, with the store's contract."""

    def __init__(self, cap: float) -> None:
        self.cap, self.spent, self.reserved = cap, 0.0, 0.0

    def try_reserve(self, run_id, amount):
        if self.spent + self.reserved + amount <= self.cap:
            self.reserved += amount
            return True, self.spent, self.cap
        return False, self.spent, self.cap

    def settle_budget(self, run_id, reserved, actual):
        self.reserved -= reserved
        self.spent += actual


def test_shared_budget_waits_for_room_then_refuses_every_later_request():
    import pytest

    from runner.errors import BudgetExceeded
    from runner.run.budget import SharedBudget

    async def scenario():
        ledger = Ledger(cap=1.0)
        first, second = SharedBudget(ledger, "run", poll_s=0.001), SharedBudget(ledger, "run", poll_s=0.001)
        held = await first.reserve(0.7)
        waiting = asyncio.ensure_future(second.reserve(0.5))  # 0.7 + 0.5 > 1.0: must wait
        await asyncio.sleep(0.01)
        assert not waiting.done()
        first.settle(held, 0.2)  # the first request cost 0.2: room for 0.5 now
        assert await waiting == 0.5
        second.settle(0.5, 0.4)
        with pytest.raises(BudgetExceeded, match=r"cap of \$1.0000 is reached: \$0.600000 spent") as refused:
            await first.reserve(0.5)  # 0.6 + 0.5 > 1.0 whatever else happens
        assert (refused.value.cap_usd, refused.value.spent_usd, refused.value.next_usd) == pytest.approx(
            (1.0, 0.6, 0.5)
        )
        with pytest.raises(BudgetExceeded):
            await first.reserve(0.01)  # once refused, every later request is too

    asyncio.run(scenario())


def test_waiting_requests_get_their_places_in_arrival_order_each_woken_once():
    # Releases come in bursts (many replies in one loop turn). Each must hand its place to the next waiter in
    # line: waking every waiter to race for the places re-queues the losers at the back (out of order) and
    # costs a wake-up per waiter per release, quadratic in a for_each's thousands of waiting elements.
    async def main():
        gate = RequestGate(3)
        entered: list[int] = []
        waits = 0
        loop = asyncio.get_running_loop()
        original = loop.create_future

        def counting_future():
            nonlocal waits
            waits += 1
            return original()

        loop.create_future = counting_future  # a request waiting in line is one future

        async def request(number: int) -> None:
            async with gate.slot("m/x"):
                entered.append(number)
                await asyncio.sleep(0)  # the reply: the three holders leave in the same turn

        await asyncio.gather(*(request(number) for number in range(30)))
        return entered, waits

    entered, waits = asyncio.run(main())
    assert entered == list(range(30))
    assert waits == 27  # each request beyond the first three waited once


def test_an_older_records_request_goes_before_a_newer_records_waiting_ahead_of_it():
    # Records finish in the order they started: a record's later step overtakes newer records' first steps in
    # the queue, so a run stopped by a kill or the budget keeps whole records rather than many half-done ones.
    from runner.chat.flow import request_priority

    async def main():
        gate = RequestGate(1)
        entered: list[str] = []
        hold = asyncio.Event()

        async def request(name: str, priority: int, wait: bool = False) -> None:
            request_priority.set(priority)
            async with gate.slot("m/x"):
                entered.append(name)
                if wait:
                    await hold.wait()

        first = asyncio.create_task(request("record 0, step 1", 0, wait=True))
        await asyncio.sleep(0)
        newer = [asyncio.create_task(request(f"record {n}, step 1", n)) for n in (1, 2)]
        await asyncio.sleep(0)
        older = asyncio.create_task(request("record 0, step 2", 0))
        await asyncio.sleep(0)
        hold.set()
        await asyncio.gather(first, *newer, older)
        return entered

    assert asyncio.run(main()) == ["record 0, step 1", "record 0, step 2", "record 1, step 1", "record 2, step 1"]


def test_room_waits_while_a_full_cap_is_in_line_and_opens_as_the_line_shortens():
    # The record window asks `room()` before it starts a record: a map's elements should wait in line a cap's
    # worth at most, not a whole window of records' worth.
    async def main():
        gate = RequestGate(2)
        release = asyncio.Event()

        async def request() -> None:
            async with gate.slot("m/x"):
                await release.wait()

        holders = [asyncio.create_task(request()) for _ in range(4)]  # two in flight, two in line
        await asyncio.sleep(0)
        room = asyncio.create_task(gate.room())
        for _ in range(5):
            await asyncio.sleep(0)
        blocked = not room.done()
        in_line = gate.queued
        holders[3].cancel()  # a request cancelled in line leaves the count at once
        await asyncio.sleep(0)
        for _ in range(3):
            await asyncio.sleep(0)
        opened = room.done()
        release.set()
        await asyncio.gather(*holders, return_exceptions=True)
        return blocked, in_line, opened, gate.queued

    assert asyncio.run(main()) == (True, 2, True, 0)


def test_a_request_waiting_for_the_runs_cap_with_room_in_its_models_lane_counts_as_in_line():
    async def main():
        gate = RequestGate(2)
        release = asyncio.Event()

        async def request(model: str) -> None:
            async with gate.slot(model):
                await release.wait()

        tasks = [asyncio.create_task(request(model)) for model in ("a/x", "a/x", "b/y", "b/y")]
        await asyncio.sleep(0)
        in_line = gate.queued
        release.set()
        await asyncio.gather(*tasks)
        return in_line, gate.queued

    assert asyncio.run(main()) == (2, 0)


def test_records_that_make_no_requests_start_many_a_loop_turn():
    # A re-run served from the cache, or code steps only: pacing such records one a turn would keep the run
    # from batching its writes (B5). After the first record, the rest of a window starts within two turns.
    async def main():
        gate = RequestGate(4)
        turns = 0

        async def ticker() -> None:
            nonlocal turns
            while True:
                await asyncio.sleep(0)
                turns += 1

        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        for _ in range(8):  # the window: two caps' worth of records
            await gate.room()
        ticking.cancel()
        return turns

    assert asyncio.run(main()) <= 3


def test_room_opens_when_requests_finish_while_a_slowed_models_line_stays():
    # A model halved to one place keeps its line; the other model's requests finishing bring the load under two
    # caps all the same, and the next record may start (it may well call the other model).
    async def main():
        gate = RequestGate(2)
        gate.throttled("slow/x")
        gate.throttled("slow/x")  # the cool-down: still 1
        slow_done, fast_done = asyncio.Event(), asyncio.Event()

        async def request(model: str, done: asyncio.Event) -> None:
            async with gate.slot(model):
                await done.wait()

        tasks = [asyncio.create_task(request("slow/x", slow_done)) for _ in range(3)]
        tasks.append(asyncio.create_task(request("fast/y", fast_done)))
        await asyncio.sleep(0)
        room = asyncio.create_task(gate.room())
        await asyncio.sleep(0)
        blocked = not room.done()  # 2 in flight, 2 slow ones in line: the load is two caps
        fast_done.set()
        for _ in range(3):
            await asyncio.sleep(0)
        opened = room.done()
        slow_done.set()
        await asyncio.gather(*tasks)
        return blocked, opened

    assert asyncio.run(main()) == (True, True)
