"""A finding of `pipeline validate`: an error or a warning with where it is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..spec.model import PipelineSpec, StepBase


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" | "warning"
    message: str
    path: str
    line: int | None
    column: int | None = None
    step: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "message": self.message,
            "file": self.path,
            "line": self.line,
            "column": self.column,
            "step": self.step,
        }


def where(spec: PipelineSpec, step: StepBase, field: str) -> tuple[int | None, int | None]:
    """The field as written in the step, else where the step inherits it from (`defaults`)."""
    for location in (("steps", step.id, field), ("defaults", field)):
        if location in spec.source.keys:
            return spec.source.keys[location]
    return step.line, None
