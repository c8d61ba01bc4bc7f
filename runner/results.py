"""What running produces: cost events, step results and record results (plain frozen values)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .client import Usage
from .errors import FailureSummary

OUTCOMES = ("ok", "invalid_json", "schema_mismatch", "content_filter", "length", "error")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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

    def view(self) -> dict[str, Any]:
        """What templates see as `steps.<id>`."""
        return {
            "output": self.output,
            "model": self.model,
            "cost_usd": self.cost_usd,
            "usage": self.usage.as_dict() if self.usage else None,
            "reasoning": self.reasoning,
            "status": self.status,
        }


@dataclass(frozen=True)
class RecordResult:
    key: str
    status: str  # ok | failed
    output: Any
    steps: Mapping[str, StepResult]
    error: FailureSummary | None = None
    run_id: str | None = None

    @property
    def cost_usd(self) -> float:
        return sum(result.cost_usd for result in self.steps.values())

    def line(self) -> dict[str, Any]:
        """One line of `--output`: key, status, output and, on failure, a safe error summary."""
        line: dict[str, Any] = {"key": self.key, "status": self.status, "output": self.output}
        if self.error is not None:
            line["error"] = self.error.as_dict()
        return line
