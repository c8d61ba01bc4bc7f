"""`for_each`: a map step runs its kind's runner once per element of a list, concurrently (the run's
request cap still holds: every element's calls go through the same client), and its output is the
list of the elements' outputs in input order. It works the same for every kind: it only extends the
scope each element sees (the element under its `as` name, and `item_index`)."""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import replace
from typing import Any

from ..chat.reply import Usage
from ..errors import FailureSummary, RenderError
from ..outcomes import FailureKind, Status
from ..spec.model import StepBase
from ..spec.strict import json_type
from .results import StepResult
from .steps import Scope, Services, StepRunner, render_failed

log = logging.getLogger(__name__)


class MapRunner:
    """Runs the map steps of one kind: `inner` (that kind's runner) once for every element."""

    def __init__(self, inner: StepRunner, services: Services) -> None:
        self._inner = inner
        self._renderer = services.renderer

    async def run(self, step: StepBase, scope: Scope) -> StepResult:
        for_each = step.for_each
        try:
            elements = self._renderer.items(step, scope.context)
        except RenderError as exc:
            log.error("record %s: %s", scope.key, exc)
            return render_failed(step.id, exc)
        if not isinstance(elements, list | tuple):
            return _refused(
                step,
                scope,
                FailureKind.RENDER_ERROR,
                f"`for_each` gave {json_type(elements)}, not a list; it must evaluate to a list (an array) "
                "to run once per element",
            )
        if len(elements) > for_each.max_items:
            return _refused(
                step,
                scope,
                FailureKind.TOO_MANY_ITEMS,
                f"`for_each` gave a list of {len(elements)} elements, more than max_items {for_each.max_items}; "
                "nothing was called (raise max_items to take it)",
            )
        results = await self._each(step, scope, elements)
        return _combined(step, scope, results)

    async def _each(self, step: StepBase, scope: Scope, elements) -> list[StepResult]:
        """Every element's result in input order; a stop (RunStopped) cancels the elements still running."""
        name = step.for_each.name
        context = scope.context
        scopes = [
            Scope(scope.key, scope.user_id, {**context, name: element, "item_index": index}, item_index=index)
            for index, element in enumerate(elements)
        ]
        stage = getattr(self._inner, "stage", None)  # a kind that can refuse an element before sending anything
        if stage is None:
            calls = [functools.partial(self._inner.run, step, element) for element in scopes]
        else:
            staged = [stage(step, element) for element in scopes]
            if step.for_each.on_item_error == "fail" and any(isinstance(each, StepResult) for each in staged):
                # One refused element (an attachment outside the files root, ...) fails the record: none is sent.
                log.error("record %s step %s: an element was refused; no element was sent", scope.key, step.id)
                return [each if isinstance(each, StepResult) else _unsent(step) for each in staged]
            calls = staged  # with `skip`, a refused element is already its (failed) result
        if len(calls) == 1:
            return [await _settled(calls[0])]
        tasks = [asyncio.ensure_future(_settled(call)) for call in calls]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise


async def _settled(call) -> StepResult:
    """An element's result: refused already when staged, else what its call gives."""
    return call if isinstance(call, StepResult) else await call()


def _unsent(step: StepBase) -> StepResult:
    return StepResult(step.id, Status.SKIPPED)


def _refused(step: StepBase, scope: Scope, kind: str, problem: str) -> StepResult:
    """The list cannot be mapped: the record fails at this step, before any element runs."""
    message = f"step '{step.id}': {problem}"
    log.error("record %s: %s", scope.key, message)
    return StepResult(step.id, Status.FAILED, error=FailureSummary(kind, step.id, message=message))


def _combined(step: StepBase, scope: Scope, results: list[StepResult]) -> StepResult:
    """One step result of the elements': costs and attempts summed; the first failure, or nulls for `skip`."""
    cost = sum(result.cost_usd for result in results)
    attempts = sum(result.attempts for result in results)
    failed = [(index, result) for index, result in enumerate(results) if result.status == Status.FAILED]
    if failed and step.for_each.on_item_error == "fail":
        index, first = failed[0]
        error = first.error or FailureSummary(FailureKind.ERROR, step.id)
        told = f"element {index} of {len(results)} failed"
        if len(failed) > 1:
            told += f" ({len(failed)} elements failed)"
        error = replace(error, step=step.id, attempts=attempts, message=f"{told}: {error.message or error.kind}")
        return StepResult(step.id, Status.FAILED, cost_usd=cost, attempts=attempts, error=error)
    for index, result in failed:
        error = result.error
        log.warning(
            "record %s step %s: element %d failed (%s: %s); it is null in the list (on_item_error: skip)",
            scope.key,
            step.id,
            index,
            error.kind if error else "error",
            error.message if error else "",
        )
    done = [result for result in results if result.status == Status.OK]
    models = list(dict.fromkeys(result.model for result in done if result.model))
    return StepResult(
        step.id,
        Status.OK,
        output=[result.output if result.status == Status.OK else None for result in results],
        model=", ".join(models) or None,
        cost_usd=cost,
        usage=_summed([result.usage for result in done if result.usage is not None]),
        attempts=attempts,
        latency_ms=max((result.latency_ms for result in results), default=0),
    )


def _summed(usages: list[Usage]) -> Usage | None:
    """The elements' usage added up (a cost stays unknown when any element's is)."""
    if not usages:
        return None
    costs = [usage.cost_usd for usage in usages]
    upstream = [usage.upstream_cost_usd for usage in usages if usage.upstream_cost_usd is not None]
    total: dict[str, Any] = {
        name: sum(getattr(usage, name) for usage in usages)
        for name in (
            "prompt_tokens",
            "completion_tokens",
            "reasoning_tokens",
            "cached_tokens",
            "total_tokens",
            "cache_write_tokens",
        )
    }
    return Usage(
        **total,
        cost_usd=None if None in costs else sum(costs),
        is_byok=any(usage.is_byok for usage in usages),
        upstream_cost_usd=sum(upstream) if upstream else None,
    )
