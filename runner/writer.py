"""The background writer: one thread per process that commits the store's batches in order.

Writing never blocks the event loop (a PostgreSQL round trip, an SQLite checkpoint); the
session awaits the writer before it reports a record done, so nothing acknowledged is lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor

from .db import Database


class BackgroundWriter:
    """Its own connection and a single thread: batches are committed one at a time, in order."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pipeline-writer")

    def submit(self, batches: Mapping[str, list[tuple]]) -> Future:
        return self._thread.submit(self._db.transaction, batches)

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self._db.close()
