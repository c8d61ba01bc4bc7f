"""Batch API batches and their requests (`--batch-api`): stored before a batch is submitted, its
OpenRouter id written right after the 202, its outcome and bill when it finishes, so a resumed run
polls what was submitted instead of paying for it again. Mixed into Store."""

from __future__ import annotations

from typing import Any

from ..run.results import utc_now

_INSERT_REQUEST = (
    "INSERT INTO batch_requests (local_id, custom_id, run_id, request_key, record_key, body_key, prompt_tokens,"
    " body_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


class BatchHistory:
    """Needs the Store's `_db`; writes at once (not queued): the order against the POST matters."""

    def store_batch(self, local_id: str, run_id: str, step: str, model: str, requests: list[tuple]) -> None:
        """A batch about to be submitted; `requests`: (custom id, request key, record key, body key,
        prompt tokens, body JSON)."""
        number = int(local_id.rsplit("/b", 1)[1]) if "/b" in local_id else 0
        self._db.transaction(
            {
                "INSERT INTO batches (local_id, run_id, number, step, model, status, requests, created_at)"
                " VALUES (?, ?, ?, ?, ?, 'stored', ?, ?)": [
                    (local_id, run_id, number, step, model, len(requests), utc_now())
                ],
                _INSERT_REQUEST: [(local_id, custom, run_id, *rest) for custom, *rest in requests],
            }
        )

    def batch_submitted(self, local_id: str, batch_id: str) -> None:
        self._db.execute(
            "UPDATE batches SET batch_id = ?, status = 'submitted', submitted_at = ? WHERE local_id = ?",
            (batch_id, utc_now(), local_id),
        )

    def batch_finished(
        self, local_id: str, status: str, error: str | None, billed_usd: float | None, normal_usd: float | None
    ) -> None:
        self._db.execute(
            "UPDATE batches SET status = ?, error_message = ?, billed_usd = ?, normal_usd = ?, finished_at = ?"
            " WHERE local_id = ?",
            (status, error, billed_usd, normal_usd, utc_now(), local_id),
        )

    def submitted_requests(self, run_id: str) -> list[dict[str, Any]]:
        """Every request of the run's batches that reached OpenRouter (an id was written), oldest batch first;
        `recorded` when its result already has its cost row (it was answered: its reply is not read again)."""
        self.flush()
        return self._db.query(
            "SELECT b.local_id, b.batch_id, b.model, b.status, r.custom_id, r.request_key, r.body_key,"
            " EXISTS (SELECT 1 FROM cost_records c WHERE c.run_id = b.run_id AND c.batch_id = b.batch_id"
            " AND c.record_key = r.record_key AND c.step = b.step) AS recorded"
            " FROM batch_requests r JOIN batches b ON b.local_id = r.local_id"
            " WHERE b.run_id = ? AND b.batch_id IS NOT NULL ORDER BY b.created_at, b.number, r.custom_id",
            (run_id,),
        )

    def batch_requests(self, local_id: str) -> list[dict[str, Any]]:
        return self._db.query(
            "SELECT custom_id, request_key, record_key, body_key, prompt_tokens FROM batch_requests"
            " WHERE local_id = ? ORDER BY custom_id",
            (local_id,),
        )

    def run_batches(self, run_id: str) -> list[dict[str, Any]]:
        """The run's batches as `pipeline show` lists them."""
        return self._db.query(
            "SELECT local_id, batch_id, step, model, status, requests, billed_usd, normal_usd, error_message,"
            " created_at, finished_at FROM batches WHERE run_id = ? ORDER BY created_at, number",
            (run_id,),
        )

    def batch_split(self, run_id: str) -> dict[str, Any]:
        """What of the run went through batches and what did not: the batched calls and their cost, what
        the same requests would cost through the normal API, and the other calls and their cost."""
        self.flush()
        rows = self._db.query(
            "SELECT c.batch_id IS NOT NULL AS batched, COUNT(*) AS calls, COALESCE(SUM(c.cost_usd), 0) AS cost"
            " FROM cost_records c WHERE c.run_id = ? AND c.cached = 0 GROUP BY c.batch_id IS NOT NULL",
            (run_id,),
        )
        (normal,) = self._db.query(
            "SELECT SUM(normal_usd) AS normal, SUM(CASE WHEN normal_usd IS NULL AND billed_usd IS NOT NULL"
            " THEN 1 ELSE 0 END) AS unpriced FROM batches WHERE run_id = ?",
            (run_id,),
        )
        split = {"batched_calls": 0, "batched_usd": 0.0, "unbatched_calls": 0, "unbatched_usd": 0.0}
        for row in rows:
            side = "batched" if row["batched"] else "unbatched"
            split[f"{side}_calls"] = int(row["calls"])
            split[f"{side}_usd"] = round(float(row["cost"]), 10)
        unknown = normal["normal"] is None or normal["unpriced"]
        split["batched_normal_usd"] = None if unknown else round(float(normal["normal"]), 10)
        return split
