"""What a run report says, computed from the stored rows of one run: totals, spend by step, module,
model and user, latency percentiles, failures by kind, spend over time, `for_each` spread and the
providers OpenRouter tried, and the run's Batch API batches. Pure: rows in, frozen values out (html.py draws them)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class DagStep:
    """A step as the pipeline file has it: its parents and a one-line detail (module, model)."""

    id: str
    parents: tuple[str, ...] = ()
    detail: str = ""
    for_each: bool = False


@dataclass(frozen=True)
class Share:
    label: str
    cost_usd: float
    calls: int
    share: float  # of the run's spend, 0..1


@dataclass(frozen=True)
class StepLatency:
    step: str
    calls: int
    p50: float
    p90: float
    p99: float
    max: float


@dataclass(frozen=True)
class FailureGroup:
    kind: str
    records: int
    steps: tuple[str, ...]
    message: str | None  # the runner's safe summary of one of them


@dataclass(frozen=True)
class ElementSpread:
    """A `for_each` step: spend per element index, and how elements and their costs spread."""

    step: str
    elements: int  # (record, element) pairs that were billed
    records: int
    by_index: tuple[tuple[int, float], ...]  # element index -> spend over all records
    per_element_p50: float
    per_element_max: float
    most_elements: int  # the largest list one record had


@dataclass(frozen=True)
class BatchRow:
    """One Batch API batch of the run (`--batch-api`), as the `batches` table keeps it."""

    batch_id: str  # OpenRouter's id, or the local id of a batch never accepted
    step: str
    model: str
    status: str
    requests: int
    billed_usd: float | None
    normal_usd: float | None  # the same requests through the normal API, at the same prompt-caching discount


@dataclass(frozen=True)
class BatchTotals:
    """What went through batches and what did not (the batched calls are left out of latency)."""

    batches: tuple[BatchRow, ...]
    batched_calls: int
    batched_usd: float
    normal_usd: float | None  # None: a batch the catalogue could not price
    unbatched_calls: int
    unbatched_usd: float


@dataclass(frozen=True)
class RunReport:
    run: Mapping[str, Any]
    cost_usd: float
    calls: int  # billed replies
    cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    records_ok: int
    records_failed: int
    duration_s: float | None
    dag: tuple[DagStep, ...]
    dag_known: bool  # the pipeline file was read (else: steps without edges, as the rows name them)
    by_step: tuple[Share, ...]
    by_module: tuple[Share, ...]
    by_model: tuple[Share, ...]
    by_user: tuple[Share, ...]
    latency: tuple[StepLatency, ...]
    failures: tuple[FailureGroup, ...]
    outcomes: tuple[Share, ...]  # billed replies by outcome (label = outcome, calls = count)
    timeline: tuple[tuple[float, float], ...]  # (seconds since the start, spend so far)
    spreads: tuple[ElementSpread, ...]
    providers: tuple[tuple[str, int, int], ...]  # provider, answered, failed attempts (from generation records)
    generations: int  # calls with a generation record
    batch: BatchTotals | None = None  # --batch-api runs only

    def step_share(self, step_id: str) -> Share:
        return next((share for share in self.by_step if share.label == step_id), Share(step_id, 0.0, 0, 0.0))


def build_report(
    run: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    calls: Sequence[Mapping[str, Any]],
    dag: Sequence[DagStep] | None,
    batches: Sequence[Mapping[str, Any]] = (),
) -> RunReport:
    """`calls`: the run's cost rows, each with its generation record's `g_*` columns (Store.run_calls);
    `batches`: its rows of the `batches` table (Store.run_batches)."""
    total = sum(float(row["cost_usd"] or 0) for row in calls)
    billed = [row for row in calls if not row["cached"]]
    known = dag is not None
    steps = tuple(dag) if dag is not None else _steps_from_rows(records, calls)
    return RunReport(
        run=dict(run),
        cost_usd=total,
        calls=len(billed),
        cache_hits=len(calls) - len(billed),
        prompt_tokens=sum(int(row["prompt_tokens"] or 0) for row in calls),
        completion_tokens=sum(int(row["completion_tokens"] or 0) for row in calls),
        records_ok=sum(1 for row in records if row["status"] != "failed"),
        records_failed=sum(1 for row in records if row["status"] == "failed"),
        duration_s=_seconds_between(run.get("started_at"), run.get("finished_at")),
        dag=steps,
        dag_known=known,
        by_step=_shares(calls, "step", total),
        by_module=_shares(calls, "module", total),
        by_model=_shares(calls, "model", total),
        by_user=_shares(calls, "user_id", total, missing="(no user)"),
        # a batched row's latency is its batch's wait, not the call's: left out
        latency=_latency([row for row in billed if not row.get("batch_id")], [step.id for step in steps]),
        failures=_failures(records),
        outcomes=_outcomes(billed),
        timeline=_timeline(calls, run.get("started_at")),
        spreads=_spreads(calls),
        providers=_providers(billed),
        generations=sum(1 for row in billed if row.get("g_id")),
        batch=_batch_totals(batches, billed) if batches else None,
    )


def _batch_totals(batches: Sequence[Mapping[str, Any]], billed: Sequence[Mapping[str, Any]]) -> BatchTotals:
    rows = tuple(
        BatchRow(
            str(batch.get("batch_id") or batch["local_id"]),
            str(batch["step"]),
            str(batch["model"]),
            str(batch["status"]),
            int(batch["requests"] or 0),
            _money(batch.get("billed_usd")),
            _money(batch.get("normal_usd")),
        )
        for batch in batches
    )
    batched = [row for row in billed if row.get("batch_id")]
    unpriced = any(row.normal_usd is None and row.billed_usd is not None for row in rows)
    normal = [row.normal_usd for row in rows if row.normal_usd is not None]
    return BatchTotals(
        rows,
        len(batched),
        sum(float(row["cost_usd"] or 0) for row in batched),
        None if unpriced or not normal else sum(normal),
        len(billed) - len(batched),
        sum(float(row["cost_usd"] or 0) for row in billed if not row.get("batch_id")),
    )


def _money(value: Any) -> float | None:
    return None if value is None else float(value)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest rank: the smallest value with at least `fraction` of the values at or below it."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return float(ordered[max(0, math.ceil(fraction * len(ordered)) - 1)])


def _shares(rows: Iterable[Mapping[str, Any]], column: str, total: float, missing: str = "-") -> tuple[Share, ...]:
    cost: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for row in rows:
        label = row[column] if row[column] not in (None, "") else missing
        cost[label] += float(row["cost_usd"] or 0)
        count[label] += 0 if row["cached"] else 1
    shares = [Share(label, cost[label], count[label], cost[label] / total if total else 0.0) for label in cost]
    return tuple(sorted(shares, key=lambda share: (-share.cost_usd, share.label)))


def _latency(billed: Sequence[Mapping[str, Any]], order: Sequence[str]) -> tuple[StepLatency, ...]:
    by_step: dict[str, list[float]] = defaultdict(list)
    for row in billed:
        by_step[row["step"]].append(float(row["latency_ms"] or 0))
    position = {step: index for index, step in enumerate(order)}
    return tuple(
        StepLatency(
            step, len(values), percentile(values, 0.5), percentile(values, 0.9), percentile(values, 0.99), max(values)
        )
        for step, values in sorted(by_step.items(), key=lambda item: (position.get(item[0], len(order)), item[0]))
    )


def _failures(records: Sequence[Mapping[str, Any]]) -> tuple[FailureGroup, ...]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record["status"] == "failed" and record.get("error_json"):
            error = json.loads(record["error_json"])
            groups[str(error.get("kind") or "error")].append(error)
    found = [
        FailureGroup(
            kind,
            len(errors),
            tuple(sorted({str(error.get("step")) for error in errors})),
            next((error["message"] for error in errors if error.get("message")), None) or _tried(errors[0]),
        )
        for kind, errors in groups.items()
    ]
    return tuple(sorted(found, key=lambda group: (-group.records, group.kind)))


def _tried(error: Mapping[str, Any]) -> str | None:
    """What a failure without the runner's own words still says safely: its billed attempts and models."""
    models = ", ".join(error.get("models") or ())
    if not models:
        return None
    return f"{error.get('attempts', 0)} billed attempt(s); models tried: {models}"


def _outcomes(billed: Sequence[Mapping[str, Any]]) -> tuple[Share, ...]:
    count: dict[str, int] = defaultdict(int)
    cost: dict[str, float] = defaultdict(float)
    for row in billed:
        count[row["outcome"]] += 1
        cost[row["outcome"]] += float(row["cost_usd"] or 0)
    total = len(billed) or 1
    return tuple(
        sorted((Share(name, cost[name], count[name], count[name] / total) for name in count), key=lambda s: -s.calls)
    )


def _timeline(rows: Sequence[Mapping[str, Any]], started_at: str | None) -> tuple[tuple[float, float], ...]:
    stamped = sorted((_parse(row["created_at"]), float(row["cost_usd"] or 0)) for row in rows if row["created_at"])
    if not stamped:
        return ()
    start = _parse(started_at) if started_at else stamped[0][0]
    start = min(start, stamped[0][0])
    spent, points = 0.0, []
    for moment, cost in stamped:
        spent += cost
        points.append((max(0.0, (moment - start).total_seconds()), spent))
    return tuple(points)


def _spreads(rows: Sequence[Mapping[str, Any]]) -> tuple[ElementSpread, ...]:
    per_element: dict[str, dict[tuple[str, int], float]] = defaultdict(lambda: defaultdict(float))
    for row in rows:
        if row.get("item_index") is not None:
            per_element[row["step"]][(row["record_key"], int(row["item_index"]))] += float(row["cost_usd"] or 0)
    spreads = []
    for step, costs in sorted(per_element.items()):
        by_index: dict[int, float] = defaultdict(float)
        most: dict[str, int] = defaultdict(int)
        for (record_key, index), cost in costs.items():
            by_index[index] += cost
            most[record_key] = max(most[record_key], index + 1)
        values = list(costs.values())
        spreads.append(
            ElementSpread(
                step,
                len(costs),
                len(most),
                tuple(sorted(by_index.items())),
                percentile(values, 0.5),
                max(values),
                max(most.values()),
            )
        )
    return tuple(spreads)


def _providers(billed: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, int, int], ...]:
    answered: dict[str, int] = defaultdict(int)
    failed: dict[str, int] = defaultdict(int)
    for row in billed:
        tried = json.loads(row["g_provider_responses"]) if row.get("g_provider_responses") else []
        for attempt in tried if isinstance(tried, list) else ():
            if not isinstance(attempt, dict):
                continue
            name = str(attempt.get("provider_name") or "?")
            if attempt.get("status") == 200:
                answered[name] += 1
            else:
                failed[name] += 1
    names = set(answered) | set(failed)
    return tuple(sorted(((name, answered[name], failed[name]) for name in names), key=lambda item: -item[1]))


def _steps_from_rows(records, calls) -> tuple[DagStep, ...]:
    seen: dict[str, None] = {}
    for row in calls:
        seen.setdefault(row["step"])
    return tuple(DagStep(step) for step in seen)


def _parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return max(0.0, (_parse(end) - _parse(start)).total_seconds())
