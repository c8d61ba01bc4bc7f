"""The Batch API's small values for running: which steps may be batched, the `custom_id` of a request,
the counts the progress display shows, and what the store keeps of batches (the `BatchLedger` protocol)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Protocol

from ..spec.model import ChatStep

MAX_BATCH_SIZE = 5_000
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def batchable(step: ChatStep, *, streaming: bool = False) -> bool:
    """Whether the step's requests may go through the Batch API: not when the step opts out
    (`batch: false`) or the run streams (the place for a step-level rule; each request is also checked
    by `text_only`, so one carrying an attachment goes to the normal API whatever the step says)."""
    return step.batch and not streaming


def text_only(body: dict[str, Any]) -> bool:
    """The Batch API refuses image, audio, video and file parts: a request that has one goes to the normal API."""
    for message in body.get("messages") or ():
        content = message.get("content")
        if isinstance(content, list) and any(part.get("type") != "text" for part in content):
            return False
    return True


def custom_id(run_id: str, record_key: str, step_id: str, element: int | None, attempt: int) -> str:
    """Names the run, record, step, element (`-` outside `for_each`) and attempt; a record key that is not
    plain letters and digits (or is long) is named by a hash of it."""
    plain = _PLAIN_KEY.fullmatch(record_key)
    record = record_key if plain else "h" + hashlib.sha256(record_key.encode()).hexdigest()[:16]
    return f"{run_id}:{record}:{step_id}:{'-' if element is None else element}:{attempt}"


class BatchLedger(Protocol):
    """What the collector keeps in the database (store/batches.py)."""

    def store_batch(self, local_id: str, run_id: str, step: str, model: str, requests: list[tuple]) -> None: ...

    def batch_submitted(self, local_id: str, batch_id: str) -> None: ...

    def batch_finished(
        self, local_id: str, status: str, error: str | None, billed_usd: float | None, normal_usd: float | None
    ) -> None: ...

    def submitted_requests(self, run_id: str) -> list[dict[str, Any]]: ...

    def batch_requests(self, local_id: str) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class BatchCounts:
    """For the progress display: batches and the requests they hold."""

    submitted: int = 0
    running: int = 0
    done: int = 0
    requests_open: int = 0
    requests_running: int = 0
    requests_done: int = 0

    def line(self) -> str:
        return (
            f"batches: {self.submitted} submitted, {self.running} running, {self.done} done "
            f"({self.requests_open} requests waiting, {self.requests_running} in batches, "
            f"{self.requests_done} answered)"
        )
