"""The runs table beyond starting and finishing a run: lookups, which runs can be resumed, runs a killed
process left `running`, and one run's figures as `pipeline runs` shows them. Mixed into Store."""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from .liveness import process_alive, this_process


class RunHistory:
    """Needs the Store's `_query`, `finish_run` and `_db`."""

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
        """The run's row; refused when it does not exist, belongs to another pipeline or was run against the
        other kind of endpoint (--mock or not)."""
        found = self.run_row(run_id)
        if found is None:
            raise UsageError(f"--resume {run_id}: no such run in {self._db.label}; `pipeline runs` lists them")
        if found["pipeline"] != pipeline:
            raise UsageError(f"--resume {run_id}: that run belongs to pipeline '{found['pipeline']}', not '{pipeline}'")
        check_mock(f"--resume {run_id}", found, mock)
        return found

    def mark_abandoned_runs(self, host: str | None = None) -> list[str]:
        """Runs still `running` whose process on this host is gone (killed, crashed) become `interrupted`."""
        host = host or this_process().host
        running = self._query("SELECT id, pid FROM runs WHERE status = 'running' AND host = ?", (host,))
        abandoned = [row["id"] for row in running if row["pid"] is not None and not process_alive(row["pid"])]
        for run_id in abandoned:
            self.finish_run(run_id, "interrupted", only_if="running")
        return abandoned

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest runs with their spend, newest first; `mock` marks the fake's runs (their cost is not real)."""
        return self._run_rows("ORDER BY r.started_at DESC LIMIT ?", (limit,))

    def run_summary(self, run_id: str) -> dict[str, Any] | None:
        """One run as `pipeline runs` shows it."""
        found = self._run_rows("WHERE r.id = ?", (run_id,))
        return found[0] if found else None

    def _run_rows(self, tail: str, parameters: tuple) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT r.id, r.pipeline, r.status, r.mock, r.records_ok, r.records_failed,"
            " (SELECT COUNT(*) FROM cost_records c WHERE c.run_id = r.id AND c.cached = 0) AS calls,"
            " (SELECT COUNT(*) FROM cost_records c WHERE c.run_id = r.id AND c.cached = 1) AS cache_hits,"
            " (SELECT COALESCE(SUM(cost_usd), 0) FROM cost_records c WHERE c.run_id = r.id) AS cost_usd,"
            f" r.started_at, r.finished_at FROM runs r {tail}",
            parameters,
        )
        for row in rows:
            row["mock"] = bool(row["mock"])
            row["cost_usd"] = round(float(row["cost_usd"]), 10)
        return rows


def check_mock(what: str, run: dict[str, Any], mock: bool) -> None:
    """A run is all --mock or all real: mixing would put the fake's costs beside real spend."""
    if bool(run["mock"]) != mock:
        kind = "a --mock run: add --mock" if run["mock"] else "a live run: drop --mock"
        raise UsageError(f"{what}: that run is {kind} to continue it")
