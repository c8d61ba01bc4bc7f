"""The chat step's runner: one chat completion, from the cache or from OpenRouter within the budget
and the rate limits, trying the fallback models in turn and re-asking a model whose reply is not
valid JSON for the schema. Every billed or cached reply becomes a cost event for the hooks."""

from __future__ import annotations

import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ...chat.billing import Billed, bill
from ...chat.flow import SlidingWindowLimiter
from ...chat.reply import Reply, Usage
from ...chat.request import build_body, encode_body, repair_messages
from ...chat.verdict import Verdict, check_reply, compile_validator
from ...errors import (
    AttachmentError,
    FailureSummary,
    NoEndpointsError,
    PipelineError,
    RenderError,
    RequestRejected,
    TransientError,
)
from ...outcomes import FailureKind, Outcome, Status
from ...plan.attachments import with_attachments
from ...spec.model import ChatStep, thaw
from ..batch_values import batchable, text_only
from ..budget import worst_case_cost
from ..files import attachment_parts
from ..hooks import place
from ..results import CacheEntry, CostEvent, StepResult, utc_now
from ..streaming import ask_streamed, show_cached, streams
from .base import Scope, Services, render_failed
from .tools import TOOLS_CALLED, ToolBox

log = logging.getLogger(__name__)

REPAIRABLE = frozenset({Outcome.INVALID_JSON, Outcome.SCHEMA_MISMATCH})
CACHEABLE = frozenset({"ok", *REPAIRABLE})  # complete replies; filtered, failed or cut-off ones are asked again


@dataclass(frozen=True)
class _PreparedStep:
    """Per-run, per-step values computed once: plain schema, compiled validator."""

    spec: ChatStep
    schema: dict | None
    validator: Any


@dataclass
class _Attempts:
    count: int = 0
    cost_usd: float = 0.0
    models: list[str] = field(default_factory=list)


class ChatRunner:
    def __init__(self, services: Services) -> None:
        self._services = services
        self._catalog = services.catalog
        self._client = services.client
        self._cache = services.cache
        self._budget = services.budget
        self._hooks = services.hooks
        self._batches = services.batches
        self._steps: dict[str, _PreparedStep] = {}
        self._limiters: dict[str, SlidingWindowLimiter] = {}
        self._tools: dict[str, ToolBox] = {}
        for step in services.spec.steps:
            if not isinstance(step, ChatStep):
                continue
            schema = thaw(step.schema) if step.schema is not None else None
            self._steps[step.id] = _PreparedStep(step, schema, compile_validator(schema) if schema else None)
            if step.tools:
                self._tools[step.id] = ToolBox(step, services.spec.path, services.spec.source)  # imports them
            if step.rate_limit is not None:
                for model in step.models:
                    self._limiters.setdefault(
                        model, SlidingWindowLimiter(step.rate_limit.requests, step.rate_limit.per_seconds)
                    )

    async def run(self, step: ChatStep, scope: Scope) -> StepResult:
        staged = self.stage(step, scope)
        return staged if isinstance(staged, StepResult) else await staged()

    def stage(self, step: ChatStep, scope: Scope) -> StepResult | Callable[[], Awaitable[StepResult]]:
        """The step's messages for this scope, attachments read: the failed result when a template or an
        attachment is refused (nothing of the step sent), else the call that sends them. A map step stages
        every element first (run/fanout.py), so one refused element leaves its siblings unsent too."""
        try:
            messages = self._services.renderer.messages(step, scope.context)
            if step.attachments:
                attachments = self._services.renderer.attachments(step, scope.context)
                messages = with_attachments(messages, attachment_parts(attachments, self._services.files))
        except (RenderError, AttachmentError) as exc:  # nothing of the step has been sent
            log.error("record %s: %s", scope.key, exc)
            return render_failed(step.id, exc)
        return functools.partial(self._send, step, scope, messages)

    async def _send(self, step: ChatStep, scope: Scope, messages) -> StepResult:
        """Each candidate model in turn (one, with server-side fallbacks) until one gives a valid reply."""
        prepared = self._steps[step.id]
        attempts = _Attempts()
        # A batch has one model: server-side fallbacks become the runner's, each model in its own batches.
        server_mode = step.fallback_mode == "server" and not self._batched(step)
        last_kind, problem = (
            FailureKind.ERROR,
            None,
        )  # problem: why the last reply was refused, in the runner's own words
        for model in (step.model,) if server_mode else step.models:
            attempts.models.append(model)
            outcome = await self._ask(prepared, model, messages, scope, attempts, server_mode)
            if isinstance(outcome, StepResult):
                return outcome
            last_kind, problem = outcome
        return _failed(step.id, last_kind, attempts, problem)

    async def _ask(
        self, prepared: _PreparedStep, model: str, messages, scope: Scope, attempts: _Attempts, server_mode: bool
    ) -> StepResult | tuple[str, str | None]:
        """One model, re-asked while its reply can be repaired: the step's result, or why to try the next model
        (the failure kind and the runner's reason for refusing the reply)."""
        step = prepared.spec
        mode = self._catalog.output_mode(model, prepared.schema is not None)
        info = self._catalog.models.get(model)
        conversation = messages
        repairs_left = step.repair_attempts
        rounds = self._tools[step.id].rounds() if step.tools else None  # the tool loop's rounds (tools.py)
        while True:
            body = build_body(
                step,
                conversation,
                model,
                schema=prepared.schema,
                mode=mode,
                user_id=scope.user_id,
                server_fallbacks=step.fallback_models if server_mode else (),
                supported_parameters=info.supported_parameters if info is not None else None,
                tool_choice=rounds.tool_choice if rounds else None,
            )
            try:
                round_ = rounds.number if rounds else None
                billed, cache_key, hit = await self._call(
                    model, body, step, scope.key, attempts.count + 1, scope.item_index, round_
                )
            except RequestRejected as exc:
                log.error("record %s step %s: %s; the step fails without trying other models", scope.key, step.id, exc)
                return _failed(step.id, exc.kind, attempts)
            except (TransientError, NoEndpointsError) as exc:
                log.warning("record %s step %s: %s; trying the next model", scope.key, step.id, exc)
                return exc.kind, None
            reply = billed.reply
            calls_tools = rounds is not None and rounds.calls_tools(reply)
            if calls_tools:
                verdict = TOOLS_CALLED
            elif hit is not None:  # the cache keeps the verdict its reply got: checked once, not on every hit
                verdict = hit.verdict
            else:
                verdict = _judge(reply, prepared.validator)
            if reply.billed:
                self._account(step, model, billed, verdict, hit, cache_key, scope, attempts, round_)
            if calls_tools:
                if rounds.exhausted:
                    return _failed(step.id, FailureKind.TOOL_ROUNDS_EXHAUSTED, attempts, rounds.exhausted_message())
                conversation = await rounds.answer(conversation, reply, scope.key)
                continue
            if verdict.ok:
                return StepResult(
                    step.id,
                    Status.OK,
                    output=verdict.value,
                    model=reply.model or model,
                    cost_usd=attempts.cost_usd,
                    usage=reply.usage,
                    reasoning=reply.reasoning,
                    attempts=attempts.count,
                    latency_ms=reply.latency_ms,
                    annotations=reply.annotations,
                )
            _log_bad_reply(scope.key, step.id, model, reply, verdict)
            if verdict.outcome in REPAIRABLE and repairs_left > 0:
                repairs_left -= 1
                conversation = repair_messages(conversation, reply.content or "", verdict.problems)
                if rounds:
                    rounds.next()
                continue
            return verdict.outcome, verdict.problems

    def _account(
        self, step, model, billed: Billed, verdict: Verdict, hit, cache_key, scope, attempts, round_=None
    ) -> None:
        """Count a billed reply against the step and report its cost (and whether to cache it)."""
        attempts.count += 1
        cached = hit is not None
        event = self._cost_event(scope, step, model, billed, verdict.outcome, attempts.count, cached, round_)
        attempts.cost_usd += event.usage.cost_usd
        keep = not cached and self._cache is not None and verdict.outcome in CACHEABLE
        self._hooks.on_cost(event, CacheEntry(cache_key, billed.reply, verdict) if keep else None)

    def _batched(self, step: ChatStep) -> bool:
        return self._batches is not None and batchable(step)

    async def _call(
        self,
        model: str,
        body: dict[str, Any],
        step: ChatStep,
        record_key: str,
        attempt: int = 1,
        element: int | None = None,
        round_: int | None = None,
    ) -> tuple[Billed, str, CacheEntry | None]:
        """A reply from the cache, or from OpenRouter within the budget: (billed reply, cache key, cache hit).

        The budget settles at the cost that will be recorded, looked up or estimated when the
        reply came without `usage.cost`.
        """
        key, content = encode_body(body)
        streamed = self._services.stream and streams(step)
        if self._cache is not None:
            hit = self._cache.lookup(key)
            if hit is not None:
                if streamed:
                    show_cached(hit.reply, step, self._hooks, record_key, element)
                return Billed(hit.reply, "usage"), key, hit
        reserved = await self._reserve(body) if self._budget is not None else 0.0
        actual = 0.0
        hooks = self._hooks
        batched = not streamed and self._batched(step) and text_only(body)  # a streamed step uses the normal API
        try:
            limiter = None if batched else self._limiters.get(model)  # batches do not count against rate limits
            if limiter is not None:
                await limiter.acquire()
            at = place(element)  # a for_each element's call says which element (and round) it is
            hooks.on_call_start(record_key, step.id, model, **place(element, round_))
            hooks.on_call_body(record_key, step.id, model, {**body, "stream": True} if streamed else body, **at)

            def retrying(status: int | None, reason: str, wait_s: float) -> None:
                hooks.on_call_retry(record_key, step.id, model, status, reason, wait_s, **at)

            try:
                if batched:  # billed by its batch, which shares out the bill when a result has no cost
                    billed = await self._batches.send(
                        step,
                        model,
                        body,
                        content=content,
                        body_key=key,
                        record_key=record_key,
                        attempt=attempt,
                        element=element,
                    )
                    reply = billed.reply
                elif streamed:
                    reply = await ask_streamed(
                        self._client, body, step, hooks, record_key, on_retry=retrying, item_index=element
                    )
                else:
                    reply = await self._client.chat(
                        body, timeout_s=step.timeout_s, retries=step.retries, content=content, on_retry=retrying
                    )
            except PipelineError as exc:
                hooks.on_call_end(record_key, step.id, model, None, exc, **at)
                raise
            hooks.on_call_end(record_key, step.id, model, reply, None, **at)
            if not batched:
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

    def _cost_event(
        self, scope: Scope, step: ChatStep, model, billed: Billed, outcome, attempt, cached, round_=None
    ) -> CostEvent:
        reply = billed.reply
        source = reply.generation_id or f"local-{secrets.token_hex(12)}"
        return CostEvent(
            # A cache hit's own id: time-ordered (cheap to index), unique, naming the reply it reused.
            id=f"cached-{time.time_ns():x}{secrets.token_hex(3)}-{source}" if cached else source,
            run_id=self._services.run_id,
            record_key=scope.key,
            step=step.id,
            module=step.module,
            requested_model=model,
            model=reply.model or model,
            provider=reply.provider,
            usage=Usage() if cached else reply.usage,
            user_id=scope.user_id,
            attempt=attempt,
            outcome=outcome,
            cached=cached,
            latency_ms=reply.latency_ms,
            created_at=(None if cached else billed.billed_at) or utc_now(),
            cost_source=billed.cost_source,
            native_finish_reason=reply.native_finish_reason,
            generation=None if cached else billed.generation,
            round=round_,
            item_index=scope.item_index,
            batch_id=None if cached else billed.batch_id,
        )


def _judge(reply: Reply, validator) -> Verdict:
    """An error inside a 200, a filtered, failed or cut-off reply fails the attempt before any parsing."""
    if reply.error is not None or reply.finish_reason == Outcome.ERROR:
        return Verdict(Outcome.ERROR, problems="the provider reported an error")
    if reply.finish_reason == Outcome.CONTENT_FILTER:
        return Verdict(Outcome.CONTENT_FILTER, problems="the reply was withheld by a content filter")
    if reply.finish_reason == Outcome.LENGTH:
        return Verdict(Outcome.LENGTH, problems="the reply was cut off at max_tokens")
    # Nothing to parse or repair: re-asking with an empty assistant turn wastes a paid call
    # (and some providers reject one), so these fall back like a provider error.
    if not reply.has_choice:
        return Verdict(Outcome.ERROR, problems="the reply had no choices")
    if reply.tool_calls and not (reply.content or "").strip():
        return Verdict(
            Outcome.ERROR,
            problems=f"the reply only called tools ({', '.join(call.name for call in reply.tool_calls)}), none offered",
        )
    if reply.content is None or not reply.content.strip():
        return Verdict(Outcome.ERROR, problems="the reply was empty")
    verdict = check_reply(reply.content, validator)
    if validator is None and not verdict.ok:
        return Verdict(Outcome.ERROR, problems=verdict.problems)
    return verdict


def _failed(step_id: str, kind: str, attempts: _Attempts, message: str | None = None) -> StepResult:
    return StepResult(
        step_id,
        Status.FAILED,
        cost_usd=attempts.cost_usd,
        attempts=attempts.count,
        error=FailureSummary(
            kind=kind, step=step_id, attempts=attempts.count, models=tuple(attempts.models), message=message
        ),
    )


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
