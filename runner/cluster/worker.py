"""One block of records in a Ray task: a Session joined to the driver's run (its own async engine,
HTTP client and database connection), the cluster's gate for its requests, the block's results and
what they cost handed back to the driver.

A block that runs again (its worker died) skips the records the run already finished (the session
of a joined worker re-emits them from the store) and is served from the response cache for every
reply that reached the ledger, so nothing is paid twice."""

from __future__ import annotations

import asyncio
import os
import pickle
import uuid
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BudgetExceeded, ConfigurationError, RunStopped
from ..run.budget import SharedBudget
from ..run.hooks import Hooks
from ..run.inputs import InputItem
from ..run.results import CacheEntry, CostEvent, RecordResult, RunTotals
from ..session import Session
from ..settings import RunOptions, Settings
from .limiter import ClusterGate

if TYPE_CHECKING:
    from ..api import Pipeline


@dataclass(frozen=True)
class Block:
    """What the driver sends: which records, and where they belong."""

    number: int
    holder: str  # the block's name at the limiter: unique in the run
    items: tuple[InputItem, ...]
    ordered: bool


@dataclass(frozen=True)
class BlockDone:
    """What a block hands back: its results (in input order when asked), its totals, a stop if one came."""

    number: int
    results: tuple[RecordResult, ...]
    totals: RunTotals
    stopped: RunStopped | None = None
    costs: tuple[CostEvent, ...] = ()  # for the driver's progress (its hooks); the ledger has them already


@dataclass(frozen=True)
class Job:
    """The run as every block sees it; the API key is not in it (each worker reads its own environment)."""

    pipeline: Pipeline
    settings: Settings
    options: RunOptions
    run_id: str
    user_id: str | None
    limiter: Any  # the ClusterLimiter actor's handle
    cwd: str  # the driver's folder: relative paths (the pipeline, attachments) mean the same here


def run_block(job: Job, block: Block) -> BlockDone:
    """The Ray task's body (synchronous: each task runs its own event loop)."""
    if Path(job.cwd).is_dir():
        os.chdir(job.cwd)
    return asyncio.run(_run_block(job, block))


async def _run_block(job: Job, block: Block) -> BlockDone:
    settings = job.settings
    if not settings.mock:
        key = os.environ.get("OPENROUTER_API_KEY")
        if not key:
            raise ConfigurationError(
                "OPENROUTER_API_KEY is not set on a Ray worker's node: set it in the environment that starts "
                "the cluster's nodes (a local cluster takes the driver's)"
            )
        settings = replace(settings, api_key=key)
    attempt = f"{block.holder}:{uuid.uuid4().hex[:8]}"
    leaked = await job.limiter.begin.remote(block.holder, attempt)  # an earlier attempt's worker died holding it
    options = replace(job.options, joined=True, executor="local", resume=False)
    gate = ClusterGate(options.concurrency, job.limiter, attempt)
    costs = _Costs()
    session = Session(
        job.pipeline, settings, user_id=job.user_id, run_id=job.run_id, options=options, gate=gate, hooks=costs
    )
    results: list[RecordResult] = []
    stopped: RunStopped | None = None
    async with session:
        if isinstance(session.budget, SharedBudget):
            if leaked > 0:  # the dead attempt's reservations, never settled: free them in the run's budget
                session.budget.settle(leaked, 0.0)
            session.budget.on_change = partial(job.limiter.reserved.remote, attempt)
        try:
            async for result in session.run_many(block.items, ordered=block.ordered):
                results.append(result)
        except RunStopped as exc:
            stopped = exc
    stop = portable(stopped) if stopped else None
    return BlockDone(block.number, tuple(results), session.totals, stop, tuple(costs.events))


class _Costs(Hooks):
    def __init__(self) -> None:
        self.events: list[CostEvent] = []

    def on_cost(self, event: CostEvent, entry: CacheEntry | None) -> None:
        self.events.append(event)


def portable(stop: RunStopped) -> RunStopped:
    """The stop as the driver can receive it: an error whose constructor takes more than its message
    (BudgetExceeded) does not survive pickling, so it travels rebuilt from its attributes."""
    try:
        pickle.loads(pickle.dumps(stop))
        return stop
    except Exception:
        pass
    if isinstance(stop, BudgetExceeded):
        return _Budget(stop.cap_usd, stop.spent_usd, stop.next_usd)
    found = RunStopped(str(stop))
    found.step = stop.step
    return found


class _Budget(BudgetExceeded):
    def __reduce__(self):
        return (_Budget, (self.cap_usd, self.spent_usd, self.next_usd))
