"""`--batch-api`: chat requests collected into OpenRouter batches, submitted, polled and answered.

Every ready request joins the open batch of its step, model and `response_format` (Google models
take one per batch); a batch is submitted when it holds `size` requests or when no request joined
it for `linger_s`. Its requests are stored before the POST and its id right after the 202, so a
resumed run polls it instead of paying for it again. A finished batch is billed as a whole
(batch_billing.py) and each waiting request gets its reply, or the failure a sync call would have
raised: a transient one goes into a later batch (`retries` times), then to the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..chat.batches import BatchClient, BatchState, result_failure
from ..chat.billing import Billed, GenerationLookup
from ..chat.catalog import Catalog
from ..errors import CallError, RunStopped, TransientError
from ..spec.model import ChatStep
from .batch_billing import bill_batch
from .batch_values import MAX_BATCH_SIZE, BatchCounts, BatchLedger, custom_id
from .budget import body_prompt_tokens

log = logging.getLogger(__name__)

_GONE = frozenset({"failed", "expired", "cancelled", "rejected"})  # batches with no results to poll for


@dataclass
class _Request:
    custom_id: str
    request_key: str
    record_key: str
    body_key: str
    content: bytes
    prompt_tokens: int
    future: asyncio.Future


@dataclass
class _Group:
    step: str
    model: str
    requests: list[_Request] = field(default_factory=list)
    custom_ids: set[str] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None


@dataclass
class _Attached:
    """A batch an earlier session of the run submitted: polled once, its results handed to whoever asks."""

    model: str
    waiters: dict[str, list[asyncio.Future]] = field(default_factory=dict)
    replies: dict[str, Billed | BaseException] | None = None
    task: asyncio.Task | None = None


class BatchCollector:
    def __init__(
        self,
        client: BatchClient,
        *,
        run_id: str,
        catalog: Catalog,
        lookup: GenerationLookup,
        ledger: BatchLedger | None = None,
        size: int = 1_000,
        linger_s: float = 5.0,
        poll_s: float = 10.0,
        poll_max_s: float = 60.0,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._client = client
        self._run_id = run_id
        self._catalog = catalog
        self._lookup = lookup
        self._ledger = ledger
        self._size = min(max(1, size), MAX_BATCH_SIZE)
        self._linger_s = linger_s
        self._poll_s = poll_s
        self._poll_max_s = max(poll_max_s, poll_s)
        self.on_change = on_change
        self._groups: dict[tuple[str, str, str], _Group] = {}
        self._tasks: set[asyncio.Task] = set()
        self._earlier: dict[str, dict[str, Any]] = {}  # request key -> the latest batch row that carried it
        self._attached: dict[str, _Attached] = {}
        self._numbered = 0
        self._session = secrets.token_hex(3)  # local ids stay unique when a resumed run numbers batches again
        self._counts = {"submitted": 0, "running": 0, "done": 0, "open": 0, "in_batches": 0, "answered": 0}

    def resume(self) -> int:
        """Learn the batches earlier sessions of the run submitted; returns how many."""
        if self._ledger is None:
            return 0
        rows = self._ledger.submitted_requests(self._run_id)
        for row in rows:  # oldest first: the latest batch of each request wins
            self._earlier[row["request_key"]] = row
        return len({row["batch_id"] for row in rows})

    def counts(self) -> BatchCounts:
        counts = self._counts
        return BatchCounts(
            counts["submitted"], counts["running"], counts["done"], counts["open"], counts["in_batches"],
            counts["answered"],
        )  # fmt: skip

    async def send(
        self,
        step: ChatStep,
        model: str,
        body: dict[str, Any],
        *,
        content: bytes,
        body_key: str,
        record_key: str,
        attempt: int,
        element: int | None = None,
    ) -> Billed:
        """The request's reply from a batch (billed, with its batch id), or the failure a sync call raises."""
        base = custom_id(self._run_id, record_key, step.id, element, attempt)
        format_key = json.dumps(body.get("response_format"), sort_keys=True)
        problem: TransientError | None = None
        for try_number in range(step.retries + 1):
            future = asyncio.get_running_loop().create_future()
            if try_number > 0 or not self._attach(base, body_key, model, future):
                request = _Request(
                    base if try_number == 0 else f"{base}.r{try_number}",
                    base,
                    record_key,
                    body_key,
                    content,
                    body_prompt_tokens(body),
                    future,
                )
                self._join(step.id, model, format_key, request)
            try:
                return await future
            except TransientError as exc:
                problem = exc
                if try_number < step.retries:
                    log.warning("record %s step %s: %s; asking again in a later batch", record_key, step.id, exc)
        raise TransientError(
            f"{problem}; gave up after {step.retries + 1} batch(es)", model=model, status=problem.status
        ) from None

    def _join(self, step_id: str, model: str, format_key: str, request: _Request) -> None:
        key = (step_id, model, format_key)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(step_id, model)
        if request.custom_id in group.custom_ids:  # OpenRouter refuses a batch that repeats one
            request.custom_id = f"{request.custom_id}.d{len(group.requests)}"
        group.custom_ids.add(request.custom_id)
        group.requests.append(request)
        self._counts["open"] += 1
        if group.timer is not None:
            group.timer.cancel()
        if len(group.requests) >= self._size:
            self._launch(key)
        else:
            group.timer = asyncio.get_running_loop().call_later(self._linger_s, self._launch, key)

    def _launch(self, key: tuple[str, str, str]) -> None:
        group = self._groups.pop(key, None)
        if group is None or not group.requests:
            return
        if group.timer is not None:
            group.timer.cancel()
        self._numbered += 1
        self._spawn(self._run_batch(f"{self._run_id}/{self._session}/b{self._numbered}", group))

    def _spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run_batch(self, local_id: str, group: _Group) -> None:
        requests = group.requests
        count = len(requests)
        self._counts["open"] -= count
        self._counts["in_batches"] += count
        try:
            if self._ledger is not None:  # before the POST: a crash after it leaves them known
                self._ledger.store_batch(
                    local_id,
                    self._run_id,
                    group.step,
                    group.model,
                    [
                        (r.custom_id, r.request_key, r.record_key, r.body_key, r.prompt_tokens, r.content.decode())
                        for r in requests
                    ],
                )
            try:
                state = await self._client.submit(group.model, [(r.custom_id, r.content) for r in requests])
            except (CallError, RunStopped) as exc:
                log.error(
                    "batch %s (%d requests of step %s on %s) was not accepted: %s",
                    local_id, count, group.step, group.model, exc,
                )  # fmt: skip
                if self._ledger is not None:
                    self._ledger.batch_finished(local_id, "rejected", str(exc), None, None)
                for request in requests:
                    _answer(request.future, exc)
                return
            if self._ledger is not None:
                self._ledger.batch_submitted(local_id, state.id)
            self._counts["submitted"] += 1
            self._counts["running"] += 1
            self._changed()
            log.info("batch %s: %d requests of step %s on %s submitted", state.id, count, group.step, group.model)
            started = time.monotonic()
            final = await self._poll(state)
            self._counts["running"] -= 1
            self._counts["done"] += 1
            replies = await self._settle(local_id, final, group.model, requests, started)
            for request in requests:
                _answer(request.future, replies[request.custom_id])
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug or a lost database must reach the records waiting, not vanish
            for request in requests:
                _answer(request.future, exc)
            raise
        finally:
            self._counts["in_batches"] -= count
            self._counts["answered"] += count
            self._changed()

    async def _poll(self, state: BatchState) -> BatchState:
        """GET the batch until it is terminal, waiting `poll_s` at first and longer each time (to `poll_max_s`)."""
        delay = self._poll_s
        while not state.terminal:
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, self._poll_max_s)
            try:
                state = await self._client.get(state.id)
            except TransientError as exc:
                log.warning("batch %s: polling failed (%s); polling again", state.id, exc)
        return state

    async def _settle(
        self, local_id: str, state: BatchState, model: str, requests: list[_Request], started: float
    ) -> dict[str, Billed | BaseException]:
        """Each request's reply or failure; the batch's billing recorded."""
        if state.status != "completed":
            reason = state.error_message or "no reason given"
            problem = TransientError(f"batch {state.id} {state.status}: {reason}", model=model)
            log.warning("%s (%d requests)", problem, len(requests))
            billed = state.usage.cost_usd if state.usage is not None else None
            if billed:  # no results to put it on: kept with the batch, and said
                message = "batch %s %s but reports a bill of $%.6f: kept in the batches table"
                log.warning(message, state.id, state.status, billed)
            if self._ledger is not None:
                self._ledger.batch_finished(local_id, state.status, reason, billed, None)
            return {request.custom_id: problem for request in requests}
        latency_ms = _batch_latency_ms(state, started)
        estimates = {request.custom_id: request.prompt_tokens for request in requests}
        billing = await bill_batch(state, model, estimates, self._catalog, self._lookup, latency_ms)
        if self._ledger is not None:
            self._ledger.batch_finished(local_id, state.status, None, billing.billed_usd, billing.normal_usd)
        results = {result.custom_id: result for result in state.results}
        replies: dict[str, Billed | BaseException] = {}
        for request in requests:
            result = results.get(request.custom_id)
            if result is None:
                replies[request.custom_id] = TransientError(
                    f"batch {state.id} returned no result for request {request.custom_id}", model=model
                )
                continue
            failure = result_failure(result, model, state.id)
            replies[request.custom_id] = failure if failure is not None else billing.replies[request.custom_id]
        return replies

    def _attach(self, request_key: str, body_key: str, model: str, future: asyncio.Future) -> bool:
        """Resuming: wait for the batch an earlier session submitted with this very request, if any."""
        row = self._earlier.pop(request_key, None)
        if row is None or row["body_key"] != body_key or row["model"] != model:
            return False
        if row["status"] in _GONE or row["recorded"]:  # nothing to read, or read already: a new request
            return False
        attached = self._attached.get(row["batch_id"])
        if attached is None:
            attached = self._attached[row["batch_id"]] = _Attached(model)
            log.info("batch %s was submitted before the run stopped: polling it, not submitting again", row["batch_id"])
            attached.task = self._spawn(self._follow(row["local_id"], row["batch_id"], attached))
        if attached.replies is not None:
            _answer(future, attached.replies.get(row["custom_id"], _missing(row)))
        else:
            attached.waiters.setdefault(row["custom_id"], []).append(future)
        return True

    async def _follow(self, local_id: str, batch_id: str, attached: _Attached) -> None:
        self._counts["running"] += 1
        self._changed()
        started = time.monotonic()
        try:
            try:
                state = await self._poll(await self._client.get(batch_id))
            except (CallError, RunStopped) as exc:
                if isinstance(exc, RunStopped):
                    raise
                # OpenRouter no longer knows it (or --mock's fake was restarted): its requests go into new batches.
                state = BatchState(batch_id, "failed", error_message=f"cannot be polled again: {exc}")
            requests = self._ledger.batch_requests(local_id) if self._ledger is not None else []
            pending = [
                _Request(
                    *(row[name] for name in ("custom_id", "request_key", "record_key", "body_key")),
                    b"",
                    row["prompt_tokens"],
                    None,
                )
                for row in requests
            ]
            attached.replies = await self._settle(local_id, state, attached.model, pending, started)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            attached.replies = {}
            for futures in attached.waiters.values():
                for future in futures:
                    _answer(future, exc)
            raise
        finally:
            self._counts["running"] -= 1
            self._counts["done"] += 1
            self._changed()
        for custom, futures in attached.waiters.items():
            for future in futures:
                _answer(future, attached.replies.get(custom, TransientError(f"batch {batch_id}: no result")))

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    async def aclose(self) -> None:
        """Stop lingering and polling (a stopped or finished run); submitted batches stay known in the database."""
        for group in self._groups.values():
            if group.timer is not None:
                group.timer.cancel()
        self._groups.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*tasks, return_exceptions=True)


def _batch_latency_ms(state: BatchState, started: float) -> int:
    if state.created_at is not None and state.finalized_at is not None:
        return max(0, (state.finalized_at - state.created_at) * 1000)
    return int((time.monotonic() - started) * 1000)


def _missing(row: dict[str, Any]) -> TransientError:
    return TransientError(f"batch {row['batch_id']} returned no result for request {row['custom_id']}")


def _answer(future: asyncio.Future | None, outcome: Billed | BaseException) -> None:
    if future is None or future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(_own_copy(outcome))
    else:
        future.set_result(outcome)


def _own_copy(exc: BaseException) -> BaseException:
    """One failure often answers a whole batch: each waiting request raises its own copy, so tracebacks
    do not pile up on one shared exception."""
    try:
        return copy.copy(exc)
    except Exception:  # an exception whose constructor cannot be replayed: shared, as it is
        return exc
