"""The step runner protocol and what every runner is given: the record's scope and the run's services."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ...chat.catalog import Catalog
from ...chat.reply import Generation, Reply
from ...errors import AttachmentError, FailureSummary, RenderError
from ...outcomes import Status
from ...plan.graph import StepGraph
from ...plan.render import Renderer
from ...spec.model import PipelineSpec, StepBase
from ..batching import BatchCollector
from ..budget import Budget, SharedBudget
from ..files import AttachmentFiles
from ..hooks import Hooks
from ..results import CacheEntry, StepResult


class ChatClient(Protocol):
    async def chat(
        self,
        body: dict[str, Any],
        *,
        timeout_s: float,
        retries: int,
        content: bytes | None = None,
        on_retry: Callable[[int | None, str, float], None] | None = None,
    ) -> Reply: ...

    async def generation(self, generation_id: str) -> Generation | None: ...


class ReplyCache(Protocol):
    def lookup(self, key: str) -> CacheEntry | None: ...


@dataclass(frozen=True)
class Services:
    """What one run gives its step runners; built once per session, shared by every record."""

    spec: PipelineSpec
    graph: StepGraph
    renderer: Renderer
    client: ChatClient
    catalog: Catalog
    run_id: str
    hooks: Hooks
    cache: ReplyCache | None = None
    budget: Budget | SharedBudget | None = None
    stream: bool = False  # text steps stream their replies (run/streaming.py)
    files: AttachmentFiles | None = None  # local attachments, below the files root
    batches: BatchCollector | None = None  # --batch-api: batchable chat requests go through it


@dataclass(frozen=True)
class Scope:
    """One record as its steps see it: its key (as text), the caller's user id, and `context`, the
    `input` and the `steps.<id>` views of the steps finished so far (render with `services.renderer`).
    In an element of a map step, `item_index` is its position (the context holds it and the element)."""

    key: str
    user_id: str | None
    context: Mapping[str, Any]
    item_index: int | None = None


class StepRunner(Protocol):
    """Runs the steps of one kind. A failure that belongs to the record is a failed StepResult; only
    RunStopped (budget, configuration) is raised.

    A runner may also offer `stage(step, scope)`: the failed result when the step would be refused for this
    scope (a template, an attachment), else a no-argument coroutine function that runs it. A map step stages
    every element before running any, so a refused element leaves its siblings unsent (run/fanout.py)."""

    async def run(self, step: StepBase, scope: Scope) -> StepResult: ...


# A kind's runner is made once per session from the run's services: it may prepare per-step values there.
MakeRunner = Callable[[Services], StepRunner]


def render_failed(step_id: str, exc: RenderError | AttachmentError) -> StepResult:
    """A template or an attachment of the step failed for this record: the record fails, saying where, and the
    others go on."""
    summary = FailureSummary(kind=exc.kind, step=step_id, message=exc.message)
    return StepResult(step_id, Status.FAILED, error=summary)
