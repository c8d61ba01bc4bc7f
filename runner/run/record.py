"""One record through the pipeline: the scheduler's walk, each step run by its kind's runner, the
output rendered at the end. It reports steps to the hooks; it never writes, nor reads the environment."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from typing import Any

from ..chat.flow import request_priority
from ..errors import FailureSummary, RenderError
from ..outcomes import Status
from ..spec.model import FrozenDict, StepBase
from .fanout import MapRunner
from .results import RecordResult, StepResult
from .scheduler import walk
from .steps import Scope, Services, StepRunner, render_failed, runner_factory

log = logging.getLogger(__name__)


class RecordRunner:
    """Runs records of one pipeline with one run's services; one per session."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._renderer = services.renderer
        self._hooks = services.hooks
        self._order = services.graph.order
        self._started = itertools.count()  # records in the order they started: their requests' priority
        kinds = {step.kind for step in services.spec.steps}
        runners: dict[str, StepRunner] = {kind: runner_factory(kind)(services) for kind in kinds}
        self._steps: dict[str, tuple[StepBase, StepRunner]] = {
            step.id: (step, runners[step.kind] if step.for_each is None else MapRunner(runners[step.kind], services))
            for step in services.spec.steps
        }

    async def run_record(self, record: Mapping[str, Any], *, key: str | int, user_id: str | None) -> RecordResult:
        """Run every step the record needs; `key` is kept as given in the result, as text in events."""
        request_priority.set(next(self._started))  # this record's requests (its task's) wait ahead of later ones
        scope = Scope(str(key), user_id, {"input": record, "steps": {}})
        views = scope.context["steps"]
        hooks = self._hooks

        def start(step_id: str):
            step, runner = self._steps[step_id]
            try:
                if not self._renderer.should_run(step, scope.context):
                    return StepResult(step_id, Status.SKIPPED)
            except RenderError as exc:
                log.error("record %s: %s", scope.key, exc)
                return render_failed(step_id, exc)
            hooks.on_step_start(scope.key, step_id)
            return runner.run(step, scope)

        def finish(result: StepResult) -> None:
            views[result.step] = result.view()
            hooks.on_step_end(scope.key, result)

        results = await walk(self._services.graph, start, finish)
        return self._record(key, scope, results)

    def _record(self, given_key, scope: Scope, results: dict[str, StepResult]) -> RecordResult:
        run_id = self._services.run_id
        failures = [results[step_id].error for step_id in self._order if step_id in results and results[step_id].error]
        frozen = FrozenDict(results)
        if failures:
            return RecordResult(given_key, Status.FAILED, None, frozen, error=failures[0], run_id=run_id)
        try:
            output = self._renderer.output(scope.context)
        except RenderError as exc:
            log.error("record %s: %s", scope.key, exc)
            summary = FailureSummary(kind=exc.kind, step="output", attempts=0, models=(), message=exc.message)
            return RecordResult(given_key, Status.FAILED, None, frozen, error=summary, run_id=run_id)
        status = (
            Status.SKIPPED
            if results and all(result.status == Status.SKIPPED for result in results.values())
            else Status.OK
        )
        return RecordResult(given_key, status, output, frozen, run_id=run_id)
