"""The DAG walk on its own, with made-up steps: no models, no renderer, no client."""

from __future__ import annotations

import asyncio

import pytest

from runner.errors import RunStopped
from runner.plan.graph import StepGraph
from runner.run.results import StepResult
from runner.run.scheduler import walk


def graph(parents: dict[str, tuple[str, ...]]) -> StepGraph:
    edges = tuple((parent, child) for child, names in parents.items() for parent in names)
    return StepGraph(tuple(parents), parents, {}, frozenset(), (), edges)


def run(parents, outcome):
    """Walk the graph; each step sleeps a moment and ends as `outcome` says (ok by default)."""
    started: list[str] = []
    finished: list[str] = []

    async def step(step_id: str) -> StepResult:
        started.append(step_id)
        await asyncio.sleep(0)
        return StepResult(step_id, outcome.get(step_id, "ok"))

    results = asyncio.run(walk(graph(parents), step, lambda result: finished.append(result.step)))
    return started, finished, {step_id: result.status for step_id, result in results.items()}


def test_a_step_starts_only_after_its_parents_and_siblings_run_together():
    started, finished, statuses = run({"a": (), "b": (), "c": ("a", "b")}, {})
    assert started[:2] == ["a", "b"] and started[2] == "c" and finished[-1] == "c"
    assert statuses == {"a": "ok", "b": "ok", "c": "ok"}


def test_a_failed_step_stops_its_dependents_and_a_running_branch_finishes():
    started, _, statuses = run({"a": (), "b": (), "c": ("a",), "d": ("b",)}, {"a": "failed"})
    assert statuses["a"] == "failed" and statuses["b"] == "ok"  # b was running: it finishes and is kept
    assert "c" not in started and "d" not in started  # after a failure no new step starts


def test_a_skipped_parent_skips_its_children_without_starting_them():
    started, _, statuses = run({"a": (), "b": ("a",)}, {"a": "skipped"})
    assert started == ["a"] and statuses == {"a": "skipped", "b": "skipped"}


def test_a_run_stopped_in_a_step_names_the_step_and_stops_the_walk():
    async def step(step_id: str) -> StepResult:
        if step_id == "b":
            raise RunStopped("the budget is spent")
        await asyncio.sleep(0)
        return StepResult(step_id, "ok")

    for parents in ({"a": (), "b": ("a",)}, {"a": (), "b": (), "c": ("a", "b")}):  # alone, and beside another
        with pytest.raises(RunStopped) as stopped:
            asyncio.run(walk(graph(parents), step, lambda result: None))
        assert stopped.value.step == "b"
