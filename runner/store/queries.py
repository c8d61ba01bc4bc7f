"""Reading the ledger and the runs table for reports: spend grouped by any dimension, the runs list,
one run in detail. Mixed into Store."""

from __future__ import annotations

from typing import Any

from ..errors import UsageError

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
    "round": "round",  # a tool step's round (null for other steps)
    "item": "item_index",  # the element of a for_each step (null for other steps)
}

COUNT_COLUMNS = ("calls", "cache_hits", "prompt_tokens", "completion_tokens", "reasoning_tokens", "total_tokens")


class Queries:
    """Needs the Store's `_query` and `_db`."""

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest runs with their spend, newest first; `mock` marks the fake's runs (their cost is not real)."""
        return self._run_rows("ORDER BY r.started_at DESC LIMIT ?", (limit,))

    def run_summary(self, run_id: str) -> dict[str, Any] | None:
        """One run as `pipeline runs` shows it."""
        found = self._run_rows("WHERE r.id = ?", (run_id,))
        if found and "normal_api_usd" in found[0]:  # --batch-api: what went through batches, what did not
            found[0].update(self.batch_split(run_id))
        return found[0] if found else None

    def _run_rows(self, tail: str, parameters: tuple) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT r.id, r.pipeline, r.status, r.mock, r.records_ok, r.records_failed,"
            " (SELECT COUNT(*) FROM cost_records c WHERE c.run_id = r.id AND c.cached = 0) AS calls,"
            " (SELECT COUNT(*) FROM cost_records c WHERE c.run_id = r.id AND c.cached = 1) AS cache_hits,"
            " (SELECT COALESCE(SUM(cost_usd), 0) FROM cost_records c WHERE c.run_id = r.id) AS cost_usd,"
            # --batch-api: what the same requests would have cost through the normal API
            " (SELECT COALESCE(SUM(cost_usd), 0) FROM cost_records c WHERE c.run_id = r.id AND c.batch_id IS NULL)"
            " + (SELECT SUM(normal_usd) FROM batches b WHERE b.run_id = r.id) AS normal_api_usd,"
            f" r.started_at, r.finished_at FROM runs r {tail}",
            parameters,
        )
        batched = any(row["normal_api_usd"] is not None for row in rows)
        for row in rows:
            row["mock"] = bool(row["mock"])
            row["cost_usd"] = round(float(row["cost_usd"]), 10)
            normal = row.pop("normal_api_usd")
            if batched:  # the column only when a run shown used batches; the others' figure is their cost
                row["normal_api_usd"] = round(float(normal), 10) if normal is not None else row["cost_usd"]
        return rows

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
        return {"run": found[0], "records": records, "steps": steps, "elements": self._element_rows(run_id)}

    def _element_rows(self, run_id: str) -> list[dict[str, Any]]:
        """Each for_each element's replies, from its cost rows: calls, cache hits, cost, the last outcome and, for
        a step with tools, the last tool round reached (`rounds`; None for other steps)."""
        rows = self._query(
            "SELECT record_key, step, item_index, SUM(1 - cached) AS calls, SUM(cached) AS cache_hits,"
            " SUM(cost_usd) AS cost_usd, MAX(round) AS rounds FROM cost_records"
            " WHERE run_id = ? AND item_index IS NOT NULL GROUP BY record_key, step, item_index"
            " ORDER BY record_key, step, item_index",
            (run_id,),
        )
        outcomes = {
            (row["record_key"], row["step"], row["item_index"]): row["outcome"]
            for row in self._query(
                "SELECT record_key, step, item_index, outcome FROM cost_records"
                " WHERE run_id = ? AND item_index IS NOT NULL ORDER BY created_at, attempt",
                (run_id,),
            )
        }
        for row in rows:
            row["calls"], row["cache_hits"] = int(row["calls"] or 0), int(row["cache_hits"] or 0)
            row["cost_usd"] = round(float(row["cost_usd"] or 0), 10)
            row["last_outcome"] = outcomes[row["record_key"], row["step"], row["item_index"]]
        return rows

    def generation_ids(self, run_id: str, *, missing_only: bool = True) -> list[str]:
        """The run's billed generation ids (no cache hits, no kept duplicates), by default those without a record."""
        missing = " AND NOT EXISTS (SELECT 1 FROM generations g WHERE g.id = c.id)" if missing_only else ""
        rows = self._query(
            f"SELECT c.id FROM cost_records c WHERE c.run_id = ? AND c.cached = 0 AND c.duplicate_of IS NULL{missing}"
            " ORDER BY c.created_at, c.id",
            (run_id,),
        )
        return [row["id"] for row in rows]

    def run_calls(self, run_id: str) -> list[dict[str, Any]]:
        """Every cost row of the run with its generation record, when one was fetched (`g_*` columns)."""
        return self._query(
            "SELECT c.*, g.provider_name AS g_provider_name, g.provider_responses AS g_provider_responses,"
            " g.latency_ms AS g_latency_ms, g.generation_time_ms AS g_generation_time_ms,"
            " g.cache_discount AS g_cache_discount, g.id AS g_id"
            " FROM cost_records c LEFT JOIN generations g ON g.id = c.id WHERE c.run_id = ?"
            " ORDER BY c.created_at, c.record_key, c.step, c.attempt",
            (run_id,),
        )

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

        `upstream` adds what providers billed for BYOK calls (`byok_upstream_usd`, outside OpenRouter's
        `cost_usd`; other calls' upstream cost is inside it) and the BYOK calls; `duplicates` and `estimated`
        appear when any row has them.
        The rows of --mock runs are the fake's, not spend: left out unless asked for (or their run is named).
        `since` is an ISO-8601 UTC time, as created_at holds it (the CLI turns `7d` into one).
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
            " SUM(CASE WHEN is_byok = 1 THEN upstream_cost_usd ELSE 0 END) AS byok_upstream_usd,"
            " SUM(is_byok) AS byok_calls,"
            " SUM(CASE WHEN cost_source = 'estimate' THEN 1 ELSE 0 END) AS estimated,"
            " SUM(CASE WHEN duplicate_of IS NULL THEN 0 ELSE 1 END) AS duplicates"
            f" FROM cost_records {where} {group}"
        )
        rows = [row for row in self._query(sql, parameters) if row["calls"]]
        for row in rows:  # the same numbers from either backend
            for name in (*COUNT_COLUMNS, "byok_calls", "estimated", "duplicates"):
                row[name] = int(row[name] or 0)
            row["cost_usd"] = round(float(row["cost_usd"] or 0), 10)
            row["byok_upstream_usd"] = round(float(row["byok_upstream_usd"] or 0), 10)
        optional = [] if upstream else ["byok_upstream_usd", "byok_calls"]
        optional += [name for name in ("estimated", "duplicates") if not any(row[name] for row in rows)]
        for row in rows:
            for name in optional:
                del row[name]
        return rows

    def cache_usage(
        self, by: tuple[str, ...], *, run_id: str | None = None, since: str | None = None, include_mock: bool = False
    ) -> list[dict[str, Any]]:
        """Prompt-cache tokens per group (as cost_summary groups) and model, for what caching saved.

        `discount_usd` adds up OpenRouter's own figure (`generations.cache_discount`, looked up with
        --fetch-generations or `pipeline enrich`); `unpriced_cached`/`unpriced_written` are the tokens
        of rows without one, for the caller to price from the catalogue.
        """
        where, parameters = _filters(run_id, since, include_mock=include_mock or run_id is not None)
        columns = [GROUP_COLUMNS[name] for name in by]
        keys = [f"{column} AS {'user' if name == 'user' else name}" for name, column in zip(by, columns, strict=True)]
        sql = (
            f"SELECT {', '.join([*keys, ''])}c.model AS cache_model,"
            " SUM(c.cached_tokens) AS cached_tokens, SUM(c.cache_write_tokens) AS cache_write_tokens,"
            " SUM(CASE WHEN g.cache_discount IS NULL THEN c.cached_tokens ELSE 0 END) AS unpriced_cached,"
            " SUM(CASE WHEN g.cache_discount IS NULL THEN c.cache_write_tokens ELSE 0 END) AS unpriced_written,"
            " SUM(COALESCE(g.cache_discount, 0)) AS discount_usd"
            f" FROM cost_records c LEFT JOIN generations g ON g.id = c.id {where}"
            f" GROUP BY {', '.join([*columns, 'c.model'])}"
            " HAVING SUM(c.cached_tokens) + SUM(c.cache_write_tokens) > 0"
        )
        rows = self._query(sql, parameters)
        for row in rows:
            for name in ("cached_tokens", "cache_write_tokens", "unpriced_cached", "unpriced_written"):
                row[name] = int(row[name] or 0)
            row["discount_usd"] = float(row["discount_usd"] or 0)
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
        parameters.append(since)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), tuple(parameters)
