"""The driver's side of a Ray run: the cluster started or joined, the shared limiter, the records
cut into blocks and sent to Ray tasks (`--workers` blocks in flight), their results streamed back
as blocks finish (in input order with `--ordered`) and counted in the driver's session."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, PipelineError, RunStopped, UsageError
from ..run.inputs import InputItem
from ..run.record import RecordRunner
from ..run.results import RecordResult, utc_now
from ..session import Session
from ..settings import RunOptions, Settings
from ..store import Store
from ..store.db import is_postgres
from .limiter import Limiter, rate_limits
from .worker import Block, BlockDone, Job, run_block

if TYPE_CHECKING:
    from ..api import Pipeline
    from ..run.hooks import Hooks

RAY_EXTRA = "pip install 'pipeline-runner[ray]'"
BLOCK_RETRIES = 3  # a block whose worker died runs again this many times
_COST_FIELDS = ("calls", "cache_hits", "prompt_tokens", "completion_tokens", "cost_usd", "estimated")
_log = logging.getLogger(__name__)


def require_ray() -> Any:
    """The `ray` module, or a ConfigurationError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigurationError(f"--executor ray needs Ray, which is not installed: {RAY_EXTRA}") from None
    return ray


def check_database(settings: Settings) -> None:
    if settings.db is None or not is_postgres(settings.db):
        raise UsageError(
            "--executor ray needs a PostgreSQL --db (postgresql://USER@HOST/DB, or PIPELINE_DB): every worker "
            "writes the run's one ledger and shares its response cache, budget and finished records, and a SQLite "
            f"file ({settings.db}) is one machine's, with one writer at a time"
        )


def start_cluster(ray: Any, address: str | None) -> None:
    """Join the cluster at `address`, or start a local one with this machine's CPUs (once per process)."""
    if ray.is_initialized():
        return
    where = {"address": address} if address else {"num_cpus": os.cpu_count() or 1}
    try:
        ray.init(**where, include_dashboard=False, logging_level=logging.WARNING, configure_logging=False)
    except ConnectionError as exc:
        raise ConfigurationError(f"--ray-address {address}: no Ray cluster there ({exc})") from None


def ray_session(
    pipeline: Pipeline,
    settings: Settings,
    *,
    user_id: str | None = None,
    run_id: str | None = None,
    hooks: Hooks | None = None,
    options: RunOptions,
) -> Session:
    """The driver's session of a Ray run: the run, its budget and its summary here; records on the cluster."""
    ray = require_ray()
    check_database(settings)
    if options.batch_api:
        raise UsageError("--batch-api runs on one machine: leave out --executor ray, or --batch-api")
    start_cluster(ray, options.ray_address)
    if options.workers is None:  # as many blocks in flight as the cluster has CPUs
        options = replace(options, workers=max(1, int(ray.cluster_resources().get("CPU", 1))))
    if options.workers is None:  # as many blocks in flight as the cluster has CPUs
        options = replace(options, workers=max(1, int(ray.cluster_resources().get("CPU", 1))))

    def executor(session: Session, records: RecordRunner) -> RayBackend:
        return RayBackend(ray, session, records, hooks)

    return Session(pipeline, settings, user_id=user_id, run_id=run_id, hooks=hooks, options=options, executor=executor)


class RayBackend:
    """RecordExecutor on a Ray cluster: each block of records is a task; the cap and rate limits are one actor's."""

    def __init__(self, ray: Any, session: Session, records: RecordRunner, hooks: Hooks | None = None) -> None:
        options = session.options
        self._hooks = hooks  # the caller's (progress, traces): told of every reply the workers recorded
        self._ray = ray
        self._session = session
        self._records = records
        self._workers = options.workers
        self._block_size = options.block_size or max(64, 8 * options.concurrency)
        self.limiter = (
            ray.remote(Limiter)
            .options(num_cpus=0, max_concurrency=max(1000, 4 * options.concurrency))
            .remote(options.concurrency, rate_limits(session.pipeline.spec))
        )
        settings = session.settings if session.settings.mock else replace(session.settings, api_key=None)
        self._job = Job(session.pipeline, settings, options, session.run_id, session.user_id, self.limiter, os.getcwd())
        self._task = ray.remote(num_cpus=1, max_retries=BLOCK_RETRIES)(run_block)
        self._tag = uuid.uuid4().hex[:8]

    async def run_record(self, record: Mapping[str, Any], *, key: str | int, user_id: str | None) -> RecordResult:
        """One record (`--input`, `Pipeline.run`) runs here, on the driver."""
        return await self._records.run_record(record, key=key, user_id=user_id)

    def run_records(
        self, run_one: Callable[[InputItem], Awaitable[RecordResult]], items: AsyncIterator[InputItem], *, ordered: bool
    ) -> AsyncIterator[list[RecordResult]]:
        """Blocks on the cluster; `run_one` (the driver's) is not used: each worker's session does its part."""
        return self._stream(items, ordered)

    async def _stream(self, items: AsyncIterator[InputItem], ordered: bool) -> AsyncIterator[list[RecordResult]]:
        since = utc_now()
        try:
            async for batch in self._blocks_run(items, ordered):
                yield batch
        finally:
            self._count_from_ledger(since)

    def _count_from_ledger(self, since: str) -> None:
        """The run's replies as the ledger has them: a block whose worker died had paid for some that its
        retry never reports (they are in the ledger, served from the cache on the retry)."""
        settings = self._session.settings
        try:
            with Store(settings.db, schema=settings.db_schema) as store:
                found = store.replies_since(self._session.run_id, since)
        except PipelineError as exc:  # the figures stay the workers' own
            _log.warning("the run's totals could not be read back from the database: %s", exc)
            return
        totals = self._session.totals
        for name, value in found.items():
            setattr(totals, name, value)

    async def _blocks_run(self, items: AsyncIterator[InputItem], ordered: bool) -> AsyncIterator[list[RecordResult]]:
        blocks = _blocks(items, self._block_size)
        in_flight: dict[asyncio.Future, Any] = {}
        waiting: dict[int, BlockDone] = {}  # --ordered: finished blocks behind an unfinished one
        sent = emitted = 0
        more = True
        stopped: RunStopped | None = None
        try:
            while True:
                while more and stopped is None and len(in_flight) < self._workers and len(waiting) < 2 * self._workers:
                    chunk = await anext(blocks, None)
                    if chunk is None:
                        more = False
                        break
                    block = Block(sent, f"{self._tag}-{sent}", chunk, ordered)
                    ref = self._task.remote(self._job, block)
                    in_flight[asyncio.ensure_future(ref)] = ref
                    sent += 1
                if not in_flight:
                    break
                done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    del in_flight[future]
                    finished = block_result(self._ray, future)
                    self._count(finished)
                    stopped = stopped or finished.stopped
                    if not ordered:
                        if finished.results:
                            yield list(finished.results)
                        continue
                    waiting[finished.number] = finished
                while emitted in waiting:
                    results = waiting.pop(emitted).results
                    emitted += 1
                    if results:
                        yield list(results)
        finally:
            for future, ref in in_flight.items():
                future.cancel()
                with contextlib.suppress(Exception):
                    self._ray.cancel(ref)
        if stopped is not None:
            raise stopped

    def _count(self, finished: BlockDone) -> None:
        """The block's records and costs in the driver's totals and hooks (progress, the summary)."""
        totals = self._session.totals
        for name in _COST_FIELDS:
            setattr(totals, name, getattr(totals, name) + getattr(finished.totals, name))
        if self._hooks is not None:
            for event in finished.costs:
                self._hooks.on_cost(event, None)
        for result in finished.results:
            totals.add_record(result)
            self._session.hooks.on_record_end(result)


def block_result(ray: Any, future: asyncio.Future) -> BlockDone:
    """A block's result; the worker's own error as it was raised there (its message, not Ray's traceback),
    or a stop when Ray gave up on the block (its worker died every time)."""
    errors = ray.exceptions
    try:
        return future.result()
    except errors.RayTaskError as exc:
        cause = exc.cause
        raise (cause if isinstance(cause, BaseException) else RunStopped(type(exc).__name__)) from None
    except errors.RayError as exc:
        raise RunStopped(
            f"a block of records was lost: its Ray worker died {BLOCK_RETRIES + 1} times "
            f"({type(exc).__name__}); the records finished so far are kept"
        ) from None


async def _blocks(items: AsyncIterator[InputItem], size: int) -> AsyncIterator[tuple[InputItem, ...]]:
    chunk: list[InputItem] = []
    async for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield tuple(chunk)
            chunk = []
    if chunk:
        yield tuple(chunk)
