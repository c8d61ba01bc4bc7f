"""The store: the cost ledger, response cache, run history, shared budgets and report queries, in
SQLite (a file) or PostgreSQL (a URL), composed from one mixin per concern around a write queue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..run.results import CacheEntry
from .batches import BatchHistory
from .budgets import Budgets
from .cache import ResponseCache
from .db import Database, open_database
from .ledger import INSERT_COST, Ledger
from .migrations import migrate
from .queries import Queries
from .runs import RunHistory

DEFAULT_DB = ".pipeline/pipeline.db"


class Store(Ledger, Budgets, ResponseCache, RunHistory, Queries, BatchHistory):
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

    def _queue(self, statement: tuple[str, tuple]) -> None:
        sql, row = statement
        self._pending.setdefault(sql, []).append(row)

    def flush(self) -> None:
        """Write everything queued in one transaction."""
        if self._pending:
            statements, self._pending = self._pending, {}
            changed = self._db.transaction(statements)
            self._pending_replies.clear()
            costs = statements.get(INSERT_COST)
            if costs and changed.get(INSERT_COST, len(costs)) < len(costs):
                self._keep_duplicates(costs)

    def _query(self, sql: str, parameters: tuple = ()) -> list[dict[str, Any]]:
        self.flush()  # read your own writes
        return self._db.query(sql, parameters)
