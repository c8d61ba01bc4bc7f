"""What a run announces to hooks: the start and the end of each record, step and call, and each cost;
and a session opened once serving many records (the way a long-lived service should run them)."""

from __future__ import annotations

import asyncio
import sqlite3

from runner import load_pipeline
from runner.fake.server import mock_transport
from runner.run.hooks import Hooks, fan_out

from .conftest import EXAMPLES


class Events(Hooks):
    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def on_record_start(self, record_key):
        self.seen.append(("record_start", record_key))

    def on_record_end(self, result):
        self.seen.append(("record_end", result.key, result.status))

    def on_step_start(self, record_key, step_id):
        self.seen.append(("step_start", record_key, step_id))

    def on_step_end(self, record_key, result):
        self.seen.append(("step_end", record_key, result.step, result.status))

    def on_call_start(self, record_key, step_id, model):
        self.seen.append(("call_start", record_key, step_id, model))

    def on_call_end(self, record_key, step_id, model, reply, error):
        self.seen.append(("call_end", record_key, step_id, model, reply is not None, error))

    def on_cost(self, event, entry):
        self.seen.append(("cost", event.record_key, event.step))


def test_records_steps_and_calls_each_start_before_they_end(fake, settings):
    pipeline = load_pipeline(EXAMPLES / "ticket_triage.yaml")
    events = Events()

    async def run():
        async with pipeline.session(settings, transport=mock_transport(fake), hooks=events) as session:
            return await session.run({"ticket": "The app crashes"}, key="t1")

    result = asyncio.run(run())
    seen = events.seen
    assert seen[0] == ("record_start", "t1") and seen[-1] == ("record_end", "t1", "ok")
    ran = [step for step, outcome in ((r.step, r.status) for r in result.steps.values()) if outcome == "ok"]
    for step in ran:
        start = seen.index(("step_start", "t1", step))
        end = seen.index(("step_end", "t1", step, "ok"))
        calls = [i for i, event in enumerate(seen) if event[0] == "call_start" and event[2] == step]
        ends = [i for i, event in enumerate(seen) if event[0] == "call_end" and event[2] == step]
        costs = [i for i, event in enumerate(seen) if event == ("cost", "t1", step)]
        assert calls and len(calls) == len(ends) == len(costs)
        assert start < calls[0] < ends[0] < costs[0] < end
        assert all(event[4] is True and event[5] is None for event in seen if event[:3] == ("call_end", "t1", step))
    assert sum(event[0] == "call_start" for event in seen) == fake.chat_requests


def test_fan_out_calls_only_the_hooks_that_listen():
    class Costs(Hooks):
        def __init__(self):
            self.events = []

        def on_cost(self, event, entry):
            self.events.append(event)

    first, second = Costs(), Costs()
    both = fan_out(first, None, second, Hooks())
    both.on_cost("event", None)
    both.on_step_start("1", "a")  # nobody listens: nothing is called, nothing fails
    assert first.events == second.events == ["event"]
    assert fan_out(first) is first and "on_step_start" not in vars(both)


def test_a_session_opened_once_serves_many_records(fake, settings, db_path):
    """A service keeps one session: one catalogue request, one HTTP pool, one run row for every record."""
    pipeline = load_pipeline(EXAMPLES / "ticket_triage.yaml")

    async def serve():
        async with pipeline.session(settings, transport=mock_transport(fake)) as session:
            return [await session.run({"ticket": f"request {number}"}, key=number) for number in range(1, 6)]

    results = asyncio.run(serve())
    assert [result.status for result in results] == ["ok"] * 5
    assert [seen.path for seen in fake.history].count("models") == 1
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
        assert db.execute("SELECT count(*) FROM records").fetchone()[0] == 5
