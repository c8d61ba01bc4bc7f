"""Running one record through the DAG: steps start as soon as their parents are done.

The executor reports; it does not write. Every billed reply goes to `on_cost`, every finished
step to `on_step`; the caller decides where they are stored. It never reads the environment.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from ..chat.billing import Billed, bill
from ..chat.catalog import Catalog
from ..chat.flow import SlidingWindowLimiter
from ..chat.reply import Generation, Reply, Usage
from ..chat.request import build_body, encode_body, repair_messages
from ..chat.verdict import Verdict, check_reply, compile_validator
from ..errors import FailureSummary, NoEndpointsError, RenderError, RequestRejected, RunStopped, TransientError
from ..plan.graph import StepGraph
from ..plan.render import Renderer
from ..spec.model import PipelineSpec, StepSpec, thaw
from .budget import Budget, SharedBudget, worst_case_cost
from .results import CacheEntry, CostEvent, RecordResult, StepResult, utc_now

log = logging.getLogger("runner.executor")

REPAIRABLE = frozenset({"invalid_json", "schema_mismatch"})


CACHEABLE = frozenset({"ok", *REPAIRABLE})  # complete replies; filtered, failed or cut-off ones are asked again


class ChatClient(Protocol):
    async def chat(
        self, body: dict[str, Any], *, timeout_s: float, retries: int, content: bytes | None = None
    ) -> Reply: ...

    async def generation(self, generation_id: str) -> Generation | None: ...


class ReplyCache(Protocol):
    def lookup(self, key: str) -> CacheEntry | None: ...


def _ignore_cost(event: CostEvent, entry: CacheEntry | None) -> None:
    return None


def _ignore_step(record_key: str, result: StepResult) -> None:
    return None


@dataclass
class Hooks:
    """Where results go; the session wires these to the store, tests to lists.

    `on_cost(event, entry)`: one billed or cached reply; `entry` is set when the reply should be
    kept in the response cache.
    """

    on_cost: Callable[[CostEvent, CacheEntry | None], None] = _ignore_cost
    on_step: Callable[[str, StepResult], None] = _ignore_step


@dataclass(frozen=True)
class _PreparedStep:
    """Per-run, per-step values computed once: plain schema, compiled validator."""

    spec: StepSpec
    schema: dict | None
    validator: Any


@dataclass
class _Attempts:
    count: int = 0
    cost_usd: float = 0.0
    models: list[str] = field(default_factory=list)


class Executor:
    def __init__(
        self,
        spec: PipelineSpec,
        graph: StepGraph,
        renderer: Renderer,
        client: ChatClient,
        catalog: Catalog,
        *,
        run_id: str,
        hooks: Hooks | None = None,
        cache: ReplyCache | None = None,
        budget: Budget | SharedBudget | None = None,
    ) -> None:
        self._cache = cache
        self._budget = budget
        self._graph = graph
        self._renderer = renderer
        self._client = client
        self._catalog = catalog
        self._run_id = run_id
        self._hooks = hooks or Hooks()
        self._steps = {}
        self._limiters: dict[str, SlidingWindowLimiter] = {}
        for step in spec.steps:
            schema = thaw(step.schema) if step.schema is not None else None
            self._steps[step.id] = _PreparedStep(step, schema, compile_validator(schema) if schema else None)
            if step.rate_limit is not None:
                for model in step.models:
                    self._limiters.setdefault(
                        model, SlidingWindowLimiter(step.rate_limit.requests, step.rate_limit.per_seconds)
                    )

    async def run_record(self, record: Mapping[str, Any], *, key: str | int, user_id: str | None) -> RecordResult:
        """Run every step the record needs; `key` is kept as given in the result, as text in events."""
        return await self._run_record(record, key, str(key), user_id)

    async def _run_record(self, record: Mapping[str, Any], given_key, key: str, user_id: str | None) -> RecordResult:
        context: dict[str, Any] = {"input": record, "steps": {}}
        results: dict[str, StepResult] = {}
        waiting = list(self._graph.order)
        running: dict[asyncio.Future, str] = {}
        failed = False
        try:
            while waiting or running:
                starting = []
                if not failed:
                    for step_id in [step_id for step_id in waiting if self._ready(step_id, results)]:
                        waiting.remove(step_id)
                        started = self._start(step_id, context, results, key, user_id)
                        if isinstance(started, StepResult):
                            self._finish(key, started, context, results)
                        else:
                            starting.append(started)
                if len(starting) == 1 and not running:
                    # The common case of a chain: one step can run and nothing else is; no task needed.
                    result = await starting[0]
                    self._finish(key, result, context, results)
                    failed = failed or result.status == "failed"
                    continue
                for coroutine in starting:
                    running[asyncio.ensure_future(coroutine)] = "step"
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    running.pop(task)
                    result = task.result()  # RunStopped propagates from here
                    self._finish(key, result, context, results)
                    failed = failed or result.status == "failed"
                if failed:
                    # Dependents will not start; independent branches in flight finish and are kept.
                    waiting.clear()
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        return self._record(given_key, key, context, results)

    def _ready(self, step_id: str, results: Mapping[str, StepResult]) -> bool:
        return all(parent in results for parent in self._graph.parents[step_id])

    def _start(self, step_id, context, results, key, user_id) -> Coroutine[Any, Any, StepResult] | StepResult:
        """The coroutine of a step that will run, or the result of one that will not."""
        step = self._steps[step_id].spec
        if any(results[parent].status != "ok" for parent in self._graph.parents[step_id]):
            return StepResult(step_id, "skipped")
        try:
            if not self._renderer.should_run(step, context):
                return StepResult(step_id, "skipped")
        except RenderError as exc:
            log.error("record %s: %s", key, exc)
            return _render_failed(step_id, exc)
        return self._run_step(self._steps[step_id], context, key, user_id)

    def _finish(self, key: str, result: StepResult, context: dict, results: dict) -> None:
        results[result.step] = result
        context["steps"][result.step] = result.view()
        self._hooks.on_step(key, result)

    def _record(self, given_key, key: str, context: dict, results: dict[str, StepResult]) -> RecordResult:
        failures = [
            results[step_id].error for step_id in self._graph.order if step_id in results and results[step_id].error
        ]
        frozen = MappingProxyType(dict(results))
        if failures:
            return RecordResult(given_key, "failed", None, frozen, error=failures[0], run_id=self._run_id)
        try:
            output = self._renderer.output(context)
        except RenderError as exc:
            log.error("record %s: %s", key, exc)
            summary = FailureSummary(kind=exc.kind, step="output", attempts=0, models=(), message=exc.message)
            return RecordResult(given_key, "failed", None, frozen, error=summary, run_id=self._run_id)
        status = "skipped" if results and all(result.status == "skipped" for result in results.values()) else "ok"
        return RecordResult(given_key, status, output, frozen, run_id=self._run_id)

    async def _run_step(self, prepared: _PreparedStep, context, key: str, user_id: str | None) -> StepResult:
        try:
            return await self._attempt_step(prepared, context, key, user_id)
        except RunStopped as exc:
            exc.step = exc.step or prepared.spec.id
            raise

    async def _attempt_step(self, prepared: _PreparedStep, context, key: str, user_id: str | None) -> StepResult:
        step = prepared.spec
        attempts = _Attempts()
        try:
            messages = self._renderer.messages(step, context)
        except RenderError as exc:
            log.error("record %s: %s", key, exc)
            return _render_failed(step.id, exc)
        server_mode = step.fallback_mode == "server"
        candidates = (step.model,) if server_mode else step.models
        last_kind = "error"
        for model in candidates:
            attempts.models.append(model)
            mode = self._catalog.output_mode(model, prepared.schema is not None)
            info = self._catalog.models.get(model)
            conversation = messages
            repairs_left = step.repair_attempts
            while True:
                body = build_body(
                    step,
                    conversation,
                    model,
                    schema=prepared.schema,
                    mode=mode,
                    user_id=user_id,
                    server_fallbacks=step.fallback_models if server_mode else (),
                    supported_parameters=info.supported_parameters if info is not None else None,
                )
                try:
                    billed, cache_key, hit = await self._call(model, body, step)
                except RequestRejected as exc:
                    log.error("record %s step %s: %s; the step fails without trying other models", key, step.id, exc)
                    return _failed(step.id, exc.kind, attempts)
                except (TransientError, NoEndpointsError) as exc:
                    log.warning("record %s step %s: %s; trying the next model", key, step.id, exc)
                    last_kind = exc.kind
                    break
                reply = billed.reply
                verdict = hit.verdict if hit is not None else _judge(reply, prepared.validator)
                if reply.billed:
                    attempts.count += 1
                    cached = hit is not None
                    event = self._cost_event(key, step, model, billed, verdict.outcome, attempts.count, user_id, cached)
                    attempts.cost_usd += event.usage.cost_usd
                    keep = not cached and self._cache is not None and verdict.outcome in CACHEABLE
                    self._hooks.on_cost(event, CacheEntry(cache_key, reply, verdict) if keep else None)
                if verdict.ok:
                    return StepResult(
                        step.id,
                        "ok",
                        output=verdict.value,
                        model=reply.model or model,
                        cost_usd=attempts.cost_usd,
                        usage=reply.usage,
                        reasoning=reply.reasoning,
                        attempts=attempts.count,
                        latency_ms=reply.latency_ms,
                    )
                _log_bad_reply(key, step.id, model, reply, verdict)
                last_kind = verdict.outcome
                if verdict.outcome in REPAIRABLE and repairs_left > 0:
                    repairs_left -= 1
                    conversation = repair_messages(conversation, reply.content or "", verdict.problems)
                    continue
                break
        return _failed(step.id, last_kind, attempts)

    async def _call(self, model: str, body: dict[str, Any], step: StepSpec) -> tuple[Billed, str, CacheEntry | None]:
        """A reply from the cache, or from OpenRouter within the budget: (billed reply, cache key, cache hit).

        The budget settles at the cost that will be recorded, looked up or estimated when the
        reply came without `usage.cost`.
        """
        key, content = encode_body(body)
        if self._cache is not None:
            hit = self._cache.lookup(key)
            if hit is not None:
                return Billed(hit.reply, "usage"), key, hit
        reserved = await self._reserve(body) if self._budget is not None else 0.0
        actual = 0.0
        try:
            limiter = self._limiters.get(model)
            if limiter is not None:
                await limiter.acquire()
            reply = await self._client.chat(body, timeout_s=step.timeout_s, retries=step.retries, content=content)
            billed = await bill(reply, model, self._client, self._catalog)
            actual = billed.reply.usage.cost_usd if billed.reply.usage else 0.0
        finally:
            if self._budget is not None:
                self._budget.settle(reserved, actual)
        return billed, key, None

    async def _reserve(self, body: dict[str, Any]) -> float:
        models = body.get("models") or [body["model"]]
        worst = max(worst_case_cost(body, self._catalog.models[model]) for model in models)
        return await self._budget.reserve(worst)

    def _cost_event(self, key, step: StepSpec, model, billed: Billed, outcome, attempt, user_id, cached) -> CostEvent:
        reply = billed.reply
        source = reply.generation_id or f"local-{secrets.token_hex(12)}"
        return CostEvent(
            # A cache hit has its own id, which names the generation it reused.
            # A cache hit's own id: time-ordered (cheap to index), unique, naming the reply it reused.
            id=f"cached-{time.time_ns():x}{secrets.token_hex(3)}-{source}" if cached else source,
            run_id=self._run_id,
            record_key=key,
            step=step.id,
            module=step.module,
            requested_model=model,
            model=reply.model or model,
            provider=reply.provider,
            usage=Usage() if cached else reply.usage,
            user_id=user_id,
            attempt=attempt,
            outcome=outcome,
            cached=cached,
            latency_ms=reply.latency_ms,
            created_at=utc_now(),
            cost_source=billed.cost_source,
            native_finish_reason=reply.native_finish_reason,
            generation=None if cached else billed.generation,
        )


def _judge(reply: Reply, validator) -> Verdict:
    """An error inside a 200, a filtered, failed or cut-off reply fails the attempt before any parsing."""
    if reply.error is not None or reply.finish_reason == "error":
        return Verdict("error", problems="the provider reported an error")
    if reply.finish_reason == "content_filter":
        return Verdict("content_filter", problems="the reply was withheld by a content filter")
    if reply.finish_reason == "length":
        return Verdict("length", problems="the reply was cut off at max_tokens")
    # Nothing to parse or repair: re-asking with an empty assistant turn wastes a paid call
    # (and some providers reject one), so these fall back like a provider error.
    if not reply.has_choice:
        return Verdict("error", problems="the reply had no choices")
    if reply.tool_calls and not (reply.content or "").strip():
        return Verdict(
            "error",
            problems=f"the reply only called tools ({', '.join(call.name for call in reply.tool_calls)}), none offered",
        )
    if reply.content is None or not reply.content.strip():
        return Verdict("error", problems="the reply was empty")
    verdict = check_reply(reply.content, validator)
    if validator is None and not verdict.ok:
        return Verdict("error", problems=verdict.problems)
    return verdict


def _failed(step_id: str, kind: str, attempts: _Attempts) -> StepResult:
    return StepResult(
        step_id,
        "failed",
        cost_usd=attempts.cost_usd,
        attempts=attempts.count,
        error=FailureSummary(kind=kind, step=step_id, attempts=attempts.count, models=tuple(attempts.models)),
    )


def _render_failed(step_id: str, exc: RenderError) -> StepResult:
    """A template of the step failed for this record: the record fails, saying where, and the others go on."""
    summary = FailureSummary(kind=exc.kind, step=step_id, message=exc.message)
    return StepResult(step_id, "failed", error=summary)


def _log_bad_reply(key: str, step_id: str, model: str, reply: Reply, verdict: Verdict) -> None:
    log.warning(
        "record %s step %s: %s from %s (generation %s, provider %s, answered by %s, finish_reason %s/%s, error %s): %s",
        key,
        step_id,
        verdict.outcome,
        model,
        reply.generation_id,
        reply.provider,
        reply.model,
        reply.finish_reason,
        reply.native_finish_reason,
        reply.error,
        verdict.problems,
    )
