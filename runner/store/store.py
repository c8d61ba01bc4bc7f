"""The cost ledger, response cache and run history, in SQLite (a file) or PostgreSQL (a URL)."""

from __future__ import annotations

import json
import logging
import re
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..run.results import CacheEntry, CostEvent, RecordResult, StepResult, utc_now
from .db import Database, open_database
from .liveness import RunProcess, this_process
from .migrations import migrate
from .runs import RunHistory, check_mock

log = logging.getLogger("runner.store")

DEFAULT_DB = ".pipeline/pipeline.db"

GROUP_COLUMNS = {
    "step": "step",
    "module": "module",
    "model": "model",
    "requested_model": "requested_model",
    "user": "user_id",
    "run": "run_id",
    "day": "substr(created_at, 1, 10)",
    "outcome": "outcome",
    "provider": "provider",
    "cost_source": "cost_source",
}

COUNT_COLUMNS = ("calls", "cache_hits", "prompt_tokens", "completion_tokens", "reasoning_tokens", "total_tokens")
_COST_COLUMNS = (
    "id", "run_id", "record_key", "step", "module", "requested_model", "model", "provider",
    "prompt_tokens", "completion_tokens", "reasoning_tokens", "cached_tokens", "total_tokens",
    "cost_usd", "user_id", "attempt", "outcome", "cached", "latency_ms", "created_at",
    "cache_write_tokens", "is_byok", "upstream_cost_usd", "cost_source", "native_finish_reason",
)  # fmt: skip
# A row whose id is already recorded is skipped here, noticed by the row count and kept under a
# suffixed id with `duplicate_of` (Store._keep_duplicates): a billed reply is never dropped.
_INSERT_COST = (
    f"INSERT INTO cost_records ({', '.join(_COST_COLUMNS)}) VALUES ({', '.join('?' for _ in _COST_COLUMNS)})"
    " ON CONFLICT (id) DO NOTHING"
)
_INSERT_DUPLICATE = (
    f"INSERT INTO cost_records ({', '.join(_COST_COLUMNS)}, duplicate_of)"
    f" VALUES ({', '.join('?' for _ in _COST_COLUMNS)}, ?)"
)
_GENERATION_COLUMNS = (
    "id", "latency_ms", "generation_time_ms", "provider_name", "provider_responses", "native_tokens_prompt",
    "native_tokens_completion", "native_tokens_reasoning", "native_tokens_cached", "cache_discount",
    "upstream_cost_usd", "total_cost_usd", "is_byok", "finish_reason", "native_finish_reason", "fetched_at",
)  # fmt: skip
_INSERT_GENERATION = (
    f"INSERT INTO generations ({', '.join(_GENERATION_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in _GENERATION_COLUMNS)}) ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _GENERATION_COLUMNS[1:])
)


MOCK_ENDPOINT = "mock"  # the response cache's label for replies of the built-in fake (--mock)


class Store(RunHistory):
    """Opened as a context manager; migrations run on open. `target` is a SQLite path or a postgresql:// URL.

    `endpoint` labels the replies this store caches and the only ones it serves (`mock`, or the
    API's base URL): a reply is never served to a run that talks to another endpoint.
    """

    def __init__(self, target: str | Path, *, schema: str | None = None, endpoint: str | None = None) -> None:
        self.target = str(target)
        self.endpoint = endpoint
        self._db: Database = open_database(target, schema)
        try:
            self.migrated = migrate(self._db)
        except BaseException:
            self._db.close()
            raise
        self._pending: dict[str, list[tuple]] = {}  # statement -> rows, written with executemany
        self._pending_replies: dict[str, CacheEntry] = {}

    @property
    def backend(self) -> str:
        return self._db.dialect.name

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._db.close()

    def _write(self, sql: str, parameters: tuple) -> None:
        self._db.transaction({sql: [parameters]})

    def start_run(
        self,
        run_id: str,
        pipeline: str,
        pipeline_path: str,
        user_id: str | None,
        *,
        mock: bool = False,
        process: RunProcess | None = None,
    ) -> None:
        """Create the run, or join it when another worker already did (`--run-id`)."""
        found = self._query("SELECT pipeline, mock FROM runs WHERE id = ?", (run_id,))
        if found and found[0]["pipeline"] != pipeline:
            raise UsageError(f"run {run_id} belongs to pipeline '{found[0]['pipeline']}', not '{pipeline}'")
        if found:
            check_mock(f"--run-id {run_id}", found[0], mock)
        process = process or this_process()
        self._write(
            "INSERT INTO runs (id, pipeline, pipeline_path, user_id, status, started_at, mock, pid, host)"
            " VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET status = 'running',"
            " finished_at = NULL, pid = excluded.pid, host = excluded.host",
            (run_id, pipeline, pipeline_path, user_id, utc_now(), int(mock), process.pid, process.host),
        )

    def resume_run(
        self, run_id: str, pipeline: str, *, mock: bool = False, process: RunProcess | None = None
    ) -> dict[str, Any]:
        """Reopen a run and return its row as it was."""
        found = self.resumable_run(run_id, pipeline, mock=mock)
        process = process or this_process()
        self._write(
            "UPDATE runs SET status = 'running', finished_at = NULL, pid = ?, host = ? WHERE id = ?",
            (process.pid, process.host, run_id),
        )
        return found

    def finish_run(self, run_id: str, status: str, *, only_if: str | None = None) -> None:
        """Set the run's final status and its record counts, as the records table has them."""
        self.flush()
        self._write(
            "UPDATE runs SET status = ?, finished_at = ?,"
            " records_ok = (SELECT COUNT(*) FROM records WHERE run_id = ? AND status != 'failed'),"
            " records_failed = (SELECT COUNT(*) FROM records WHERE run_id = ? AND status = 'failed')"
            " WHERE id = ? AND status = COALESCE(?, status)",
            (status, utc_now(), run_id, run_id, run_id, only_if),
        )

    def run_spend(self, run_id: str) -> float:
        self.flush()
        row = self._db.one("SELECT COALESCE(SUM(cost_usd), 0) FROM cost_records WHERE run_id = ?", (run_id,))
        return float(row[0])

    def open_budget(self, run_id: str, max_cost_usd: float, *, fresh: bool) -> None:
        """The run's shared budget row; `fresh` (a resume) forgets reservations a killed worker left."""
        spent = self.run_spend(run_id)
        self._write(
            "INSERT INTO budgets (run_id, max_cost_usd, spent_usd, reserved_usd) VALUES (?, ?, ?, 0)"
            " ON CONFLICT (run_id) DO UPDATE SET max_cost_usd = excluded.max_cost_usd",
            (run_id, max_cost_usd, spent),
        )
        if fresh:
            self._write("UPDATE budgets SET spent_usd = ?, reserved_usd = 0 WHERE run_id = ?", (spent, run_id))

    def try_reserve(self, run_id: str, amount: float) -> tuple[bool, float, float]:
        """Atomically reserve `amount` if spend plus reservations stay within the cap: (reserved, spent, cap)."""
        changed = self._db.execute(
            "UPDATE budgets SET reserved_usd = reserved_usd + ?"
            " WHERE run_id = ? AND spent_usd + reserved_usd + ? <= max_cost_usd",
            (amount, run_id, amount),
        )
        spent, cap = self._db.one("SELECT spent_usd, max_cost_usd FROM budgets WHERE run_id = ?", (run_id,))
        return changed == 1, float(spent), float(cap)

    def settle_budget(self, run_id: str, reserved: float, actual: float) -> None:
        self._db.execute(
            "UPDATE budgets SET spent_usd = spent_usd + ?,"
            " reserved_usd = CASE WHEN reserved_usd > ? THEN reserved_usd - ? ELSE 0 END WHERE run_id = ?",
            (actual, reserved, reserved, run_id),
        )

    def add_cost(self, event: CostEvent, entry: CacheEntry | None = None) -> None:
        """Queue one billed (or cached) reply, and the reply itself for the response cache.

        The caller flushes soon (the session: at the end of the event-loop iteration), so a
        reply reaches the disk within one iteration of arriving and is never paid for twice.
        """
        usage = event.usage
        self._queue(
            (
                _INSERT_COST,
                (
                    event.id, event.run_id, event.record_key, event.step, event.module, event.requested_model,
                    event.model, event.provider, usage.prompt_tokens, usage.completion_tokens,
                    usage.reasoning_tokens, usage.cached_tokens, usage.total_tokens, usage.cost_usd or 0.0,
                    event.user_id, event.attempt, event.outcome, int(event.cached), event.latency_ms,
                    event.created_at, usage.cache_write_tokens, int(usage.is_byok), usage.upstream_cost_usd,
                    event.cost_source, event.native_finish_reason,
                ),
            )
        )  # fmt: skip
        found = event.generation
        if found is not None:
            self._queue(
                (
                    _INSERT_GENERATION,
                    (
                        found.id, found.latency_ms, found.generation_time_ms, found.provider_name,
                        found.provider_responses, found.native_tokens_prompt, found.native_tokens_completion,
                        found.native_tokens_reasoning, found.native_tokens_cached, found.cache_discount,
                        found.upstream_cost_usd, found.total_cost_usd, int(found.is_byok), found.finish_reason,
                        found.native_finish_reason, utc_now(),
                    ),
                )
            )  # fmt: skip
        if entry is not None and self.endpoint is not None:
            self._pending_replies[entry.key] = entry
            self._queue(
                (
                    "INSERT INTO response_cache (endpoint, key, generation_id, model, reply_json, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (endpoint, key) DO NOTHING",
                    (self.endpoint, entry.key, event.id, event.model, entry.to_json(), event.created_at),
                )
            )

    def cached_reply(self, cache_key: str) -> CacheEntry | None:
        """The reply this store's endpoint gave to the same request, if it is cached."""
        if self.endpoint is None:
            return None
        waiting = self._pending_replies.get(cache_key)
        if waiting is not None:
            return waiting
        row = self._db.one(
            "SELECT reply_json FROM response_cache WHERE endpoint = ? AND key = ?", (self.endpoint, cache_key)
        )
        return CacheEntry.from_json(cache_key, row[0]) if row else None

    def cache_stats(self) -> list[dict[str, Any]]:
        """The response cache by endpoint and model: entries, size in bytes, oldest and newest entry."""
        octets = "OCTET_LENGTH({})" if self.backend == "postgresql" else "LENGTH(CAST({} AS BLOB))"
        size = " + ".join(octets.format(column) for column in ("key", "generation_id", "reply_json"))
        rows = self._query(
            "SELECT endpoint, model, COUNT(*) AS entries,"
            f" SUM({size}) AS size_bytes,"
            " MIN(created_at) AS oldest, MAX(created_at) AS newest"
            " FROM response_cache GROUP BY endpoint, model ORDER BY endpoint, model"
        )
        for row in rows:
            row["entries"], row["size_bytes"] = int(row["entries"]), int(row["size_bytes"] or 0)
        return rows

    def clear_cache(
        self, *, mock_only: bool = False, older_than: str | None = None, endpoint: str | None = None
    ) -> int:
        """Delete cache entries (those of --mock, older than a duration, of one endpoint); returns how many."""
        clauses, parameters = [], []
        if mock_only:
            clauses.append("endpoint = ?")
            parameters.append(MOCK_ENDPOINT)
        if endpoint is not None:
            clauses.append("endpoint = ?")
            parameters.append(endpoint)
        if older_than is not None:
            clauses.append("created_at < ?")
            parameters.append(since_timestamp(older_than, option="--older-than"))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        self.flush()
        return self._db.execute(f"DELETE FROM response_cache{where}", tuple(parameters))

    def add_step(self, run_id: str, record_key: str, result: StepResult) -> None:
        """Queued; written at the next flush()."""
        self._queue(
            (
                "INSERT INTO step_results (run_id, record_key, step, status, output_json, model, cost_usd,"
                " attempts, error_kind, reasoning, latency_ms, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (run_id, record_key, step) DO UPDATE SET status = excluded.status,"
                " output_json = excluded.output_json, model = excluded.model, cost_usd = excluded.cost_usd,"
                " attempts = excluded.attempts, error_kind = excluded.error_kind, reasoning = excluded.reasoning,"
                " latency_ms = excluded.latency_ms, created_at = excluded.created_at",
                (
                    run_id, record_key, result.step, result.status, json.dumps(result.output, ensure_ascii=False),
                    result.model, result.cost_usd, result.attempts, result.error.kind if result.error else None,
                    result.reasoning, result.latency_ms, utc_now(),
                ),
            )
        )  # fmt: skip

    def add_record(self, result: RecordResult, fingerprint: str | None = None) -> None:
        """Queued; flush() before the record is reported done. `fingerprint` hashes the input record."""
        self._queue(
            (
                "INSERT INTO records (run_id, record_key, status, output_json, error_json, cost_usd, created_at,"
                " fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, record_key) DO UPDATE SET"
                " status = excluded.status, output_json = excluded.output_json, error_json = excluded.error_json,"
                " cost_usd = excluded.cost_usd, created_at = excluded.created_at, fingerprint = excluded.fingerprint",
                (
                    result.run_id, str(result.key), result.status, json.dumps(result.output, ensure_ascii=False),
                    json.dumps(result.error.as_dict()) if result.error else None, result.cost_usd, utc_now(),
                    fingerprint,
                ),
            )
        )  # fmt: skip

    def _queue(self, statement: tuple[str, tuple]) -> None:
        sql, row = statement
        self._pending.setdefault(sql, []).append(row)

    def flush(self) -> None:
        """Write everything queued in one transaction."""
        if self._pending:
            statements, self._pending = self._pending, {}
            changed = self._db.transaction(statements)
            self._pending_replies.clear()
            costs = statements.get(_INSERT_COST)
            if costs and changed.get(_INSERT_COST, len(costs)) < len(costs):
                self._keep_duplicates(costs)

    def _keep_duplicates(self, rows: list[tuple]) -> None:
        """Cost rows the ledger skipped because their id was taken: logged as errors and stored under a new id.

        A row equal in every column to the stored one is the same reply written again, not a duplicate.
        """
        ids = sorted({row[0] for row in rows})
        stored: dict[str, tuple] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            found = self._db.query(
                f"SELECT {', '.join(_COST_COLUMNS)} FROM cost_records WHERE id IN ({', '.join('?' for _ in chunk)})",
                tuple(chunk),
            )
            stored.update({row["id"]: tuple(row[name] for name in _COST_COLUMNS) for row in found})
        kept = []
        for row in rows:
            original = stored.get(row[0])
            if original is None or original == tuple(row):
                continue
            new_id = f"{row[0]}#dup-{secrets.token_hex(4)}"
            log.error(
                "duplicate generation id %s: run %s, record %s, step %s (attempt %s) was billed under an id already"
                " recorded for run %s, record %s, step %s (attempt %s); kept as %s with duplicate_of = %s",
                row[0], row[1], row[2], row[3], row[15], original[1], original[2], original[3], original[15],
                new_id, row[0],
            )  # fmt: skip
            kept.append((new_id, *row[1:], row[0]))
        if kept:
            self._db.transaction({_INSERT_DUPLICATE: kept})

    def finished_record(self, run_id: str, record_key: str, *, include_failed: bool = False) -> dict[str, Any] | None:
        """A record this run already finished (ok or skipped; failed too if asked), with its input's fingerprint."""
        found = self._query(
            "SELECT status, output_json, error_json, fingerprint FROM records WHERE run_id = ? AND record_key = ?"
            + ("" if include_failed else " AND status != 'failed'"),
            (run_id, record_key),
        )
        return found[0] if found else None

    def _query(self, sql: str, parameters: tuple = ()) -> list[dict[str, Any]]:
        self.flush()  # read your own writes
        return self._db.query(sql, parameters)

    def run_detail(self, run_id: str) -> dict[str, Any] | None:
        """One run: its row, each record's result and each step's result."""
        found = self._query("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not found:
            return None
        records = self._query(
            "SELECT record_key, status, output_json, error_json, cost_usd FROM records"
            " WHERE run_id = ? ORDER BY created_at, record_key",
            (run_id,),
        )
        steps = self._query(
            "SELECT record_key, step, status, model, attempts, cost_usd, error_kind, output_json, reasoning"
            " FROM step_results WHERE run_id = ? ORDER BY created_at, record_key, step",
            (run_id,),
        )
        return {"run": found[0], "records": records, "steps": steps}

    def mock_cost_rows(self) -> int:
        """How many cost rows belong to --mock runs (left out of cost reports unless asked for)."""
        row = self._db.one("SELECT COUNT(*) FROM cost_records WHERE run_id IN (SELECT id FROM runs WHERE mock = 1)")
        return int(row[0])

    def cost_rows(self, run_id: str | None = None) -> list[dict[str, Any]]:
        where, parameters = _filters(run_id, None)
        return self._query(f"SELECT * FROM cost_records {where} ORDER BY created_at, id", parameters)

    def cost_summary(
        self,
        by: tuple[str, ...],
        *,
        run_id: str | None = None,
        since: str | None = None,
        upstream: bool = False,
        include_mock: bool = False,
    ) -> list[dict[str, Any]]:
        """Spend grouped by the named dimensions (step, module, model, user, day, ...).

        `upstream` adds what providers billed (`upstream_usd`, for BYOK outside OpenRouter's
        `cost_usd`) and the BYOK calls; `duplicates` and `estimated` appear when any row has them.
        The rows of --mock runs are the fake's, not spend: left out unless asked for (or their run is named).
        """
        unknown = [name for name in by if name not in GROUP_COLUMNS]
        if unknown:
            raise UsageError(f"cannot group by {', '.join(unknown)}; choose from {', '.join(GROUP_COLUMNS)}")
        where, parameters = _filters(run_id, since, include_mock=include_mock or run_id is not None)
        keys = [f"{GROUP_COLUMNS[name]} AS {'user' if name == 'user' else name}" for name in by]
        group = f"GROUP BY {', '.join(GROUP_COLUMNS[name] for name in by)} ORDER BY cost_usd DESC" if by else ""
        sql = (
            f"SELECT {', '.join([*keys, ''])}"
            "COUNT(*) AS calls, SUM(cached) AS cache_hits, SUM(prompt_tokens) AS prompt_tokens,"
            " SUM(completion_tokens) AS completion_tokens, SUM(reasoning_tokens) AS reasoning_tokens,"
            " SUM(total_tokens) AS total_tokens, SUM(cost_usd) AS cost_usd,"
            " SUM(upstream_cost_usd) AS upstream_usd, SUM(is_byok) AS byok_calls,"
            " SUM(CASE WHEN cost_source = 'estimate' THEN 1 ELSE 0 END) AS estimated,"
            " SUM(CASE WHEN duplicate_of IS NULL THEN 0 ELSE 1 END) AS duplicates"
            f" FROM cost_records {where} {group}"
        )
        rows = [row for row in self._query(sql, parameters) if row["calls"]]
        for row in rows:  # the same numbers from either backend
            for name in (*COUNT_COLUMNS, "byok_calls", "estimated", "duplicates"):
                row[name] = int(row[name] or 0)
            row["cost_usd"] = round(float(row["cost_usd"] or 0), 10)
            row["upstream_usd"] = None if row["upstream_usd"] is None else round(float(row["upstream_usd"]), 10)
        optional = [] if upstream else ["upstream_usd", "byok_calls"]
        optional += [name for name in ("estimated", "duplicates") if not any(row[name] for row in rows)]
        for row in rows:
            for name in optional:
                del row[name]
        return rows


def _filters(run_id: str | None, since: str | None, *, include_mock: bool = True) -> tuple[str, tuple]:
    clauses, parameters = [], []
    if not include_mock:
        clauses.append("run_id NOT IN (SELECT id FROM runs WHERE mock = 1)")
    if run_id:
        clauses.append("run_id = ?")
        parameters.append(run_id)
    if since:
        clauses.append("created_at >= ?")
        parameters.append(since_timestamp(since))
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), tuple(parameters)


_DURATION = re.compile(r"^(?P<amount>\d+)(?P<unit>[smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def since_timestamp(since: str, now: datetime | None = None, *, option: str = "--since") -> str:
    """`7d`, `24h`, `30m` ago, or an ISO date, as the ISO-8601 UTC text stored in created_at."""
    match = _DURATION.match(since.strip())
    if match:
        moment = (now or datetime.now(UTC)) - timedelta(**{_UNITS[match["unit"]]: int(match["amount"])})
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    try:
        moment = datetime.fromisoformat(since.strip())
    except ValueError:
        raise UsageError(
            f"{option} {since!r}: use a duration such as 7d, 24h or 30m, or a date such as 2026-11-01"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
