"""The DAG walk of one record: a step starts as soon as its parents are done, a failed step stops
its dependents, and independent branches already running finish. It knows nothing of models: what
starting a step means is the caller's `start`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ..errors import RunStopped
from ..outcomes import Status
from ..plan.graph import StepGraph
from .results import StepResult

# A step's result now (it will not run), or the awaitable of its run.
Start = Callable[[str], Awaitable[StepResult] | StepResult]


async def walk(graph: StepGraph, start: Start, finish: Callable[[StepResult], None]) -> dict[str, StepResult]:
    """Every step's result by id (in the order they finished); `finish` sees each as it comes.

    A step whose parent did not end ok is skipped without `start`. RunStopped from a step propagates,
    naming the step, after the steps in flight are cancelled.
    """
    results: dict[str, StepResult] = {}
    parents = graph.parents
    waiting = list(graph.order)
    running: dict[asyncio.Future, str] = {}
    failed = False

    def done(result: StepResult) -> None:
        results[result.step] = result
        finish(result)

    try:
        while waiting or running:
            starting = []
            if not failed:
                for step_id in [step_id for step_id in waiting if all(p in results for p in parents[step_id])]:
                    waiting.remove(step_id)
                    if any(results[parent].status != Status.OK for parent in parents[step_id]):
                        done(StepResult(step_id, Status.SKIPPED))
                        continue
                    started = start(step_id)
                    if isinstance(started, StepResult):
                        done(started)
                    else:
                        starting.append((step_id, started))
            if len(starting) == 1 and not running:
                # The common case of a chain: one step can run and nothing else is; no task needed.
                step_id, awaitable = starting[0]
                try:
                    result = await awaitable
                except RunStopped as exc:
                    exc.step = exc.step or step_id
                    raise
                done(result)
                failed = failed or result.status == Status.FAILED
                continue
            for step_id, awaitable in starting:
                running[asyncio.ensure_future(awaitable)] = step_id
            if not running:
                break
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                step_id = running.pop(task)
                try:
                    result = task.result()
                except RunStopped as exc:
                    exc.step = exc.step or step_id
                    raise
                done(result)
                failed = failed or result.status == Status.FAILED
            if failed:
                # Dependents will not start; independent branches in flight finish and are kept.
                waiting.clear()
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
    return results
