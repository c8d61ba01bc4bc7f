"""The cost ledger: one row per billed (or cached) reply, the generation records looked up for them,
and duplicate generation ids kept and logged rather than dropped. Mixed into Store."""

from __future__ import annotations

import logging
import secrets

from ..chat.reply import Generation
from ..run.results import CacheEntry, CostEvent, utc_now

log = logging.getLogger(__name__)

_COST_COLUMNS = (
    "id", "run_id", "record_key", "step", "module", "requested_model", "model", "provider",
    "prompt_tokens", "completion_tokens", "reasoning_tokens", "cached_tokens", "total_tokens",
    "cost_usd", "user_id", "attempt", "outcome", "cached", "latency_ms", "created_at",
    "cache_write_tokens", "is_byok", "upstream_cost_usd", "cost_source", "native_finish_reason",
    "item_index", "round", "batch_id",
)  # fmt: skip
# A row whose id is already recorded is skipped here, noticed by the row count and kept under a
# suffixed id with `duplicate_of` (Store._keep_duplicates): a billed reply is never dropped.
INSERT_COST = (
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


class Ledger:
    """Needs the Store's `_queue`, `_queue_reply` and `_db`."""

    def run_spend(self, run_id: str) -> float:
        self.flush()
        row = self._db.one("SELECT COALESCE(SUM(cost_usd), 0) FROM cost_records WHERE run_id = ?", (run_id,))
        return float(row[0])

    def replies_since(self, run_id: str, since: str) -> dict[str, float]:
        """The run's replies recorded at or after `since` (ISO-8601 UTC) by any process, as RunTotals counts
        them: billed calls, cache hits, their tokens and cost, and how many were estimates."""
        self.flush()
        row = self._db.one(
            "SELECT COALESCE(SUM(1 - cached), 0), COALESCE(SUM(cached), 0),"
            " COALESCE(SUM(CASE WHEN cached = 0 THEN prompt_tokens ELSE 0 END), 0),"
            " COALESCE(SUM(CASE WHEN cached = 0 THEN completion_tokens ELSE 0 END), 0), COALESCE(SUM(cost_usd), 0),"
            " COALESCE(SUM(CASE WHEN cost_source = 'estimate' AND cached = 0 THEN 1 ELSE 0 END), 0)"
            " FROM cost_records WHERE run_id = ? AND created_at >= ?",
            (run_id, since),
        )
        names = ("calls", "cache_hits", "prompt_tokens", "completion_tokens", "cost_usd", "estimated")
        values = zip(names, row, strict=True)
        return {name: float(value) if name == "cost_usd" else int(value) for name, value in values}

    def add_cost(self, event: CostEvent, entry: CacheEntry | None = None) -> None:
        """Queue one billed (or cached) reply, and the reply itself for the response cache.

        The caller flushes soon (the session: at the end of the event-loop iteration), so a
        reply reaches the disk within one iteration of arriving and is never paid for twice.
        """
        usage = event.usage
        self._queue(
            (
                INSERT_COST,
                (
                    event.id, event.run_id, event.record_key, event.step, event.module, event.requested_model,
                    event.model, event.provider, usage.prompt_tokens, usage.completion_tokens,
                    usage.reasoning_tokens, usage.cached_tokens, usage.total_tokens, usage.cost_usd or 0.0,
                    event.user_id, event.attempt, event.outcome, int(event.cached), event.latency_ms,
                    event.created_at, usage.cache_write_tokens, int(usage.is_byok), usage.upstream_cost_usd,
                    event.cost_source, event.native_finish_reason, event.item_index, event.round,
                    event.batch_id,
                ),
            )
        )  # fmt: skip
        if event.generation is not None:
            self.add_generation(event.generation)
        if entry is not None:
            self._queue_reply(event, entry)

    def add_generation(self, found: Generation) -> None:
        """Queue one `GET /generation` record (a `generations` row; fetched again, it replaces the old one)."""
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
