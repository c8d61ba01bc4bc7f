"""The response cache: replies keyed by endpoint (`mock` or the API's base URL) and request, looked up
before a call, counted and cleared on request. Mixed into Store."""

from __future__ import annotations

from typing import Any

from ..run.results import CacheEntry, CostEvent

MOCK_ENDPOINT = "mock"  # the response cache's label for replies of the built-in fake (--mock)


class ResponseCache:
    """Needs the Store's `endpoint`, `_pending_replies`, `_queue`, `_query`, `flush`, `backend` and `_db`."""

    def _queue_reply(self, event: CostEvent, entry: CacheEntry) -> None:
        """Queue a reply for the cache of this store's endpoint (none: nothing is cached)."""
        if self.endpoint is None:
            return
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
        """Delete cache entries (the fake's, those written before `older_than`, an ISO-8601 UTC time, or one
        endpoint's); returns how many."""
        clauses, parameters = [], []
        if mock_only:
            clauses.append("endpoint = ?")
            parameters.append(MOCK_ENDPOINT)
        if endpoint is not None:
            clauses.append("endpoint = ?")
            parameters.append(endpoint)
        if older_than is not None:
            clauses.append("created_at < ?")
            parameters.append(older_than)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        self.flush()
        return self._db.execute(f"DELETE FROM response_cache{where}", tuple(parameters))
