"""A run's events as log records (logger `runner.run.eventlog`): each finished record, step, call and
billed reply, with its fields as attributes (`run`, `record`, `step`, `attempt`, `outcome`, `status`,
`generation_id`, `item_index` and `round` for a `for_each` element's call or a tool round's, ...) for a
structured formatter, and a short message for people.

Only ids, statuses, counts and the runner's own safe summaries: never a prompt, a reply or a provider's
error text (those stay in the store and, for errors, in the client's own log lines).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .hooks import Hooks

if TYPE_CHECKING:
    from ..chat.reply import Reply
    from ..errors import PipelineError
    from .results import CacheEntry, CostEvent, RecordResult, StepResult

log = logging.getLogger(__name__)


def event_log(run_id: str) -> EventLog | None:
    """An EventLog when someone listens (INFO is on for it), else None: no cost for a quiet run."""
    return EventLog(run_id) if log.isEnabledFor(logging.INFO) else None


class EventLog(Hooks):
    """Logs each event of one run: ends at INFO, starts at DEBUG, failed calls at WARNING."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._rounds: dict[tuple[str, str, int | None], int] = {}  # the tool round of each call in flight

    def _emit(self, level: int, event: str, message: str, **fields: Any) -> None:
        if log.isEnabledFor(level):
            values = {name: value for name, value in fields.items() if value is not None}
            log.log(level, message, extra={"event": event, "run": self.run_id, **values})

    def on_record_start(self, record_key: str) -> None:
        self._emit(logging.DEBUG, "record_start", f"record {record_key} started", record=record_key)

    def on_record_end(self, result: RecordResult) -> None:
        error = result.error
        self._emit(
            logging.INFO,
            "record_end",
            f"record {result.key}: {result.status}" + (f" ({error.kind} in step {error.step})" if error else ""),
            record=str(result.key),
            status=str(result.status),
            error_kind=error.kind if error else None,
            step=error.step if error else None,
            resumed=result.resumed or None,
        )

    def on_step_start(self, record_key: str, step_id: str) -> None:
        self._emit(
            logging.DEBUG, "step_start", f"record {record_key} step {step_id} started", record=record_key, step=step_id
        )

    def on_step_end(self, record_key: str, result: StepResult) -> None:
        error = result.error
        self._emit(
            logging.INFO,
            "step_end",
            f"record {record_key} step {result.step}: {result.status}" + (f" ({error.kind})" if error else ""),
            record=record_key,
            step=result.step,
            status=str(result.status),
            model=result.model,
            attempts=result.attempts,
            cost_usd=result.cost_usd,
            latency_ms=result.latency_ms,
            error_kind=error.kind if error else None,
        )

    def on_call_start(
        self, record_key: str, step_id: str, model: str, *, item_index: int | None = None, round: int | None = None
    ) -> None:
        if round is not None:
            self._rounds[(record_key, step_id, item_index)] = round
        self._emit(
            logging.DEBUG,
            "call_start",
            f"record {record_key} step {step_id}{_element(item_index)}: asking {model}",
            record=record_key,
            step=step_id,
            model=model,
            item_index=item_index,
            round=round,
        )

    def on_call_end(
        self,
        record_key: str,
        step_id: str,
        model: str,
        reply: Reply | None,
        error: PipelineError | None,
        *,
        item_index: int | None = None,
    ) -> None:
        where = {"item_index": item_index, "round": self._rounds.pop((record_key, step_id, item_index), None)}
        if error is None:
            generation = reply.generation_id if reply is not None else None
            self._emit(
                logging.DEBUG,
                "call_end",
                f"record {record_key} step {step_id}{_element(item_index)}: {model} answered",
                record=record_key,
                step=step_id,
                model=model,
                generation_id=generation,
                **where,
            )
            return
        kind = str(getattr(error, "kind", type(error).__name__))
        status = getattr(error, "status", None)
        self._emit(
            logging.WARNING,
            "call_failed",
            f"record {record_key} step {step_id}{_element(item_index)}: {model} failed ({kind}"
            + (f", HTTP {status})" if status is not None else ")"),
            record=record_key,
            step=step_id,
            model=model,
            error_kind=kind,
            http_status=status,
            **where,
        )

    def on_cost(self, event: CostEvent, entry: CacheEntry | None) -> None:
        source = "the cache" if event.cached else event.model
        self._emit(
            logging.INFO,
            "reply",
            f"record {event.record_key} step {event.step}{_element(event.item_index)} attempt {event.attempt}:"
            f" {event.outcome} from {source}"
            f" (${event.usage.cost_usd or 0:.6f})",
            record=event.record_key,
            step=event.step,
            attempt=event.attempt,
            outcome=str(event.outcome),
            generation_id=None if event.cached else event.id,
            cached=event.cached,
            model=event.model,
            provider=event.provider,
            cost_usd=event.usage.cost_usd,
            cost_source=event.cost_source,
            latency_ms=event.latency_ms,
            item_index=event.item_index,
            round=event.round,
        )


def _element(item_index: int | None) -> str:
    return f" element {item_index}" if item_index is not None else ""
