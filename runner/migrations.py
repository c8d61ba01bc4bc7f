"""Numbered schema migrations: an append-only list, each applied once and recorded."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from .results import utc_now


def m001_initial(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE cost_records (
            id TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            record_key TEXT NOT NULL,
            step TEXT NOT NULL,
            module TEXT NOT NULL,
            requested_model TEXT NOT NULL,
            model TEXT NOT NULL,
            provider TEXT,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            reasoning_tokens INTEGER NOT NULL DEFAULT 0,
            cached_tokens INTEGER NOT NULL DEFAULT 0,
            total_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            user_id TEXT,
            attempt INTEGER NOT NULL,
            outcome TEXT NOT NULL CHECK (outcome IN
                ('ok', 'invalid_json', 'schema_mismatch', 'content_filter', 'length', 'error')),
            cached INTEGER NOT NULL DEFAULT 0 CHECK (cached IN (0, 1)),
            latency_ms INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX cost_records_run ON cost_records (run_id)")
    db.execute("CREATE INDEX cost_records_created ON cost_records (created_at)")
    db.execute(
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            pipeline TEXT NOT NULL,
            pipeline_path TEXT NOT NULL,
            user_id TEXT,
            status TEXT NOT NULL,
            records_ok INTEGER NOT NULL DEFAULT 0,
            records_failed INTEGER NOT NULL DEFAULT 0,
            started_at TEXT NOT NULL,
            finished_at TEXT
        )
        """
    )
    db.execute(
        """
        CREATE TABLE step_results (
            run_id TEXT NOT NULL,
            record_key TEXT NOT NULL,
            step TEXT NOT NULL,
            status TEXT NOT NULL,
            output_json TEXT,
            model TEXT,
            cost_usd REAL NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            error_kind TEXT,
            reasoning TEXT,
            latency_ms INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            PRIMARY KEY (run_id, record_key, step)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE records (
            run_id TEXT NOT NULL,
            record_key TEXT NOT NULL,
            status TEXT NOT NULL,
            output_json TEXT,
            error_json TEXT,
            cost_usd REAL NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            PRIMARY KEY (run_id, record_key)
        )
        """
    )


def m002_response_cache(db: sqlite3.Connection) -> None:
    """Replies keyed by a hash of the canonical request body, so a re-run never pays twice."""
    db.execute(
        """
        CREATE TABLE response_cache (
            key TEXT PRIMARY KEY,
            generation_id TEXT NOT NULL,
            model TEXT NOT NULL,
            reply_json TEXT NOT NULL,
            created_at TEXT NOT NULL
        )
        """
    )


MIGRATIONS: tuple[tuple[int, Callable[[sqlite3.Connection], None]], ...] = (
    (1, m001_initial),
    (2, m002_response_cache),
)


def migrate(db: sqlite3.Connection) -> list[int]:
    """Apply the migrations this database has not seen, each in its own transaction; returns them."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations"
        " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    applied = {row[0] for row in db.execute("SELECT version FROM schema_migrations")}
    done = []
    for version, function in MIGRATIONS:
        if version in applied:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone():
                db.execute("ROLLBACK")  # another process applied it while we waited for the lock
                continue
            function(db)
            db.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (version, function.__name__, utc_now()),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        done.append(version)
    return done
