"""What running produces: cost events, step results and record results (plain frozen values)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from ..chat.reply import Annotation, Generation, Reply, Usage
from ..chat.verdict import Verdict
from ..errors import FailureSummary
from ..outcomes import Status


def utc_now() -> str:
    """ISO-8601 UTC with milliseconds, e.g. 2026-11-24T03:04:54.446Z (sorts as text)."""
    now = time.time()
    seconds = int(now)
    return f"{_utc_second(seconds)}.{int((now - seconds) * 1000):03d}Z"


@lru_cache(maxsize=4)
def _utc_second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


@dataclass(frozen=True)
class CacheEntry:
    """A reply kept in the response cache with the verdict it got: the key fixes the schema, so it holds."""

    key: str
    reply: Reply
    verdict: Verdict

    def to_json(self) -> str:
        verdict = self.verdict
        return json.dumps(
            {
                "reply": self.reply.to_cache(),
                "outcome": verdict.outcome,
                "value": verdict.value,
                "problems": verdict.problems,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, key: str, text: str) -> CacheEntry:
        stored = json.loads(text)
        verdict = Verdict(stored["outcome"], stored.get("value"), stored.get("problems", ""))
        return cls(key, Reply.from_cache(stored["reply"]), verdict)


@dataclass(frozen=True)
class CostEvent:
    """One billed reply: becomes one row of `cost_records`."""

    id: str
    run_id: str
    record_key: str
    step: str
    module: str
    requested_model: str
    model: str
    provider: str | None
    usage: Usage
    user_id: str | None
    attempt: int
    outcome: str
    cached: bool
    latency_ms: int
    created_at: str
    cost_source: str = "usage"  # where usage.cost_usd came from: usage | generation | estimate | batch
    native_finish_reason: str | None = None
    generation: Generation | None = None  # the record looked up for the cost: a `generations` row
    item_index: int | None = None  # the element of a `for_each` step (0-based)
    round: int | None = None  # the tool-calling round (1-based)
    batch_id: str | None = None  # the Batch API batch that carried the request


@dataclass(frozen=True)
class StepResult:
    step: str
    status: str  # ok | failed | skipped
    output: Any = None
    model: str | None = None  # the model that produced the output
    cost_usd: float = 0.0  # every billed reply of the step, failed attempts included
    usage: Usage | None = None  # of the reply that produced the output
    reasoning: str | None = None
    attempts: int = 0  # billed replies
    latency_ms: int = 0
    error: FailureSummary | None = None
    annotations: tuple[Annotation, ...] = ()  # of the reply that produced the output: web search's url_citation

    def view(self) -> dict[str, Any]:
        """What templates see as `steps.<id>`."""
        return {
            "output": self.output,
            "model": self.model,
            "cost_usd": self.cost_usd,
            "usage": self.usage.as_dict() if self.usage else None,
            "reasoning": self.reasoning,
            "status": self.status,
            "annotations": [json.loads(annotation.data) for annotation in self.annotations],
        }


@dataclass(frozen=True)
class RecordResult:
    key: str | int
    status: str  # ok | failed | skipped (every step skipped by `when`)
    output: Any
    steps: Mapping[str, StepResult]
    error: FailureSummary | None = None
    run_id: str | None = None
    resumed: bool = False  # finished by an earlier session of the run, read back from the store

    @property
    def cost_usd(self) -> float:
        return sum(result.cost_usd for result in self.steps.values())

    def line(self) -> dict[str, Any]:
        """One line of `--output`: key, status, output and, on failure, a safe error summary."""
        line: dict[str, Any] = {"key": self.key, "status": self.status, "output": self.output}
        if self.error is not None:
            line["error"] = self.error.as_dict()
        return line


@dataclass
class RunTotals:
    """Running counts for progress and the final summary."""

    records_ok: int = 0
    records_failed: int = 0
    records_skipped: int = 0
    calls: int = 0  # billed replies
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    estimated: int = 0  # billed replies priced from the catalogue (no usage.cost, no generation record)
    started: float = field(default_factory=time.monotonic)  # reset when the records start flowing

    @property
    def records(self) -> int:
        return self.records_ok + self.records_failed + self.records_skipped

    def add_cost(self, event: CostEvent) -> None:
        if event.cached:
            self.cache_hits += 1
            return
        self.calls += 1
        self.prompt_tokens += event.usage.prompt_tokens
        self.completion_tokens += event.usage.completion_tokens
        self.cost_usd += event.usage.cost_usd or 0.0
        if event.cost_source == "estimate":
            self.estimated += 1

    def add_record(self, result: RecordResult) -> None:
        if result.status == Status.OK:
            self.records_ok += 1
        elif result.status == Status.SKIPPED:
            self.records_skipped += 1
        else:
            self.records_failed += 1

    def summary(self) -> str:
        estimated = f" ({self.estimated} estimated)" if self.estimated else ""
        return (
            f"records: {self.records_ok} ok, {self.records_failed} failed, {self.records_skipped} skipped; "
            f"calls: {self.calls} billed, {self.cache_hits} from cache; "
            f"tokens: {self.prompt_tokens} prompt, {self.completion_tokens} completion; "
            f"cost: ${self.cost_usd:.6f}{estimated}; {time.monotonic() - self.started:.2f}s"
        )
