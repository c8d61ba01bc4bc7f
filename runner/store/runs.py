"""The runs table and what a run writes as it goes: starting, joining, resuming and finishing a run,
records and step results (queued, written in batches), which runs can be resumed and runs a killed
process left `running`. Mixed into Store."""

from __future__ import annotations

import json
from typing import Any

from ..errors import RunMismatch, RunNotFound
from ..outcomes import RunStatus, Status
from ..run.results import RecordResult, StepResult, utc_now
from .liveness import RunProcess, process_alive, this_process


class RunHistory:
    """Needs the Store's `_query`, `_queue`, `_write`, `flush` and `_db`."""

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
        """Create the run, or join it when another worker already did (RunMismatch when it is not this
        pipeline's, or not of this kind of endpoint)."""
        found = self._query("SELECT pipeline, mock FROM runs WHERE id = ?", (run_id,))
        if found:
            check_run(run_id, found[0], pipeline, mock, resuming=False)
        process = process or this_process()
        self._write(
            "INSERT INTO runs (id, pipeline, pipeline_path, user_id, status, started_at, mock, pid, host)"
            f" VALUES (?, ?, ?, ?, '{RunStatus.RUNNING}', ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
            f" status = '{RunStatus.RUNNING}',"
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
            f"UPDATE runs SET status = '{RunStatus.RUNNING}', finished_at = NULL, pid = ?, host = ? WHERE id = ?",
            (process.pid, process.host, run_id),
        )
        return found

    def finish_run(self, run_id: str, status: RunStatus, *, only_if: RunStatus | None = None) -> None:
        """Set the run's final status and its record counts, as the records table has them."""
        self.flush()
        self._write(
            "UPDATE runs SET status = ?, finished_at = ?,"
            f" records_ok = (SELECT COUNT(*) FROM records WHERE run_id = ? AND status != '{Status.FAILED}'),"
            f" records_failed = (SELECT COUNT(*) FROM records WHERE run_id = ? AND status = '{Status.FAILED}')"
            " WHERE id = ? AND status = COALESCE(?, status)",
            (status, utc_now(), run_id, run_id, run_id, only_if),
        )

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

    def finished_record(self, run_id: str, record_key: str, *, include_failed: bool = False) -> dict[str, Any] | None:
        """A record this run already finished (ok or skipped; failed too if asked), with its input's fingerprint."""
        found = self._query(
            "SELECT status, output_json, error_json, fingerprint FROM records WHERE run_id = ? AND record_key = ?"
            + ("" if include_failed else f" AND status != '{Status.FAILED}'"),
            (run_id, record_key),
        )
        return found[0] if found else None

    def failed_steps(self, run_id: str, record_key: str) -> list[tuple[str, str | None]]:
        """(step, error kind) of each step of the record that failed in the run."""
        rows = self._query(
            "SELECT step, error_kind FROM step_results"
            f" WHERE run_id = ? AND record_key = ? AND status = '{Status.FAILED}'",
            (run_id, record_key),
        )
        return [(row["step"], row["error_kind"]) for row in rows]

    def run_row(self, run_id: str) -> dict[str, Any] | None:
        found = self._query("SELECT * FROM runs WHERE id = ?", (run_id,))
        return found[0] if found else None

    def run_exists(self, run_id: str) -> bool:
        """A run of `runs`, or one whose costs were recorded without a run row (the Python API's)."""
        return bool(
            self._query("SELECT id FROM runs WHERE id = ?", (run_id,))
            or self._query("SELECT id FROM cost_records WHERE run_id = ? LIMIT 1", (run_id,))
        )

    def resumable_run(self, run_id: str, pipeline: str, *, mock: bool) -> dict[str, Any]:
        """The run's row; RunNotFound when it does not exist, RunMismatch when it belongs to another pipeline
        or was run against the other kind of endpoint (the fake or a real API)."""
        found = self.run_row(run_id)
        if found is None:
            raise RunNotFound(run_id, self._db.label)
        check_run(run_id, found, pipeline, mock, resuming=True)
        return found

    def mark_abandoned_runs(self, host: str | None = None) -> list[str]:
        """Runs still `running` whose process on this host is gone (killed, crashed) become `interrupted`."""
        host = host or this_process().host
        running = self._query("SELECT id, pid FROM runs WHERE status = ? AND host = ?", (RunStatus.RUNNING, host))
        abandoned = [row["id"] for row in running if row["pid"] is not None and not process_alive(row["pid"])]
        for run_id in abandoned:
            self.finish_run(run_id, RunStatus.INTERRUPTED, only_if=RunStatus.RUNNING)
        return abandoned


def check_run(run_id: str, run: dict[str, Any], pipeline: str, mock: bool, *, resuming: bool) -> None:
    """A run is one pipeline's, and all against the fake or all real: mixing would put the fake's costs
    beside real spend."""
    if run["pipeline"] != pipeline:
        raise RunMismatch(run_id, resuming=resuming, pipeline=pipeline, run_pipeline=run["pipeline"])
    if bool(run["mock"]) != mock:
        raise RunMismatch(run_id, resuming=resuming, pipeline=pipeline, run_mock=bool(run["mock"]))
