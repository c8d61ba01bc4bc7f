from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest

from runner.client import Usage
from runner.errors import StoreError, UsageError
from runner.migrations import MIGRATIONS, migrate
from runner.results import CostEvent
from runner.store import SQLiteStore, since_timestamp

DESIGN_COLUMNS = [
    ("id", "TEXT"), ("run_id", "TEXT"), ("record_key", "TEXT"), ("step", "TEXT"), ("module", "TEXT"),
    ("requested_model", "TEXT"), ("model", "TEXT"), ("provider", "TEXT"), ("prompt_tokens", "INTEGER"),
    ("completion_tokens", "INTEGER"), ("reasoning_tokens", "INTEGER"), ("cached_tokens", "INTEGER"),
    ("total_tokens", "INTEGER"), ("cost_usd", "REAL"), ("user_id", "TEXT"), ("attempt", "INTEGER"),
    ("outcome", "TEXT"), ("cached", "INTEGER"), ("latency_ms", "INTEGER"), ("created_at", "TEXT"),
]  # fmt: skip


def event(**changes) -> CostEvent:
    values = dict(
        id="gen-1", run_id="run-a", record_key="1", step="classify", module="triage",
        requested_model="google/gemini-2.5-flash-lite", model="google/gemini-2.5-flash-lite", provider="Google",
        usage=Usage(10, 5, 2, 0, 15, 0.001), user_id="u1", attempt=1, outcome="ok", cached=False,
        latency_ms=120, created_at="2026-11-20T10:00:00.000Z",
    )  # fmt: skip
    values.update(changes)
    return CostEvent(**values)


def test_migrations_create_design_tables_on_a_blank_database(tmp_path):
    with SQLiteStore(tmp_path / "new.db") as store:
        columns = [(row[1], row[2]) for row in store._db.execute("PRAGMA table_info(cost_records)")]
        tables = {row[0] for row in store._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        journal = store._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert columns == DESIGN_COLUMNS
    assert {"cost_records", "runs", "step_results", "records", "schema_migrations"} <= tables
    assert journal == "wal"


def test_migrations_apply_once(tmp_path):
    path = tmp_path / "twice.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path, isolation_level=None) as db:
        assert migrate(db) == []
        versions = [row[0] for row in db.execute("SELECT version FROM schema_migrations")]
    assert versions == [number for number, _ in MIGRATIONS]


def test_generation_id_is_unique(tmp_path):
    with SQLiteStore(tmp_path / "x.db") as store:
        store.add_cost(event())
        store.add_cost(event())
        assert len(store.cost_rows()) == 1


def test_outcome_must_be_a_known_value(tmp_path):
    store = SQLiteStore(tmp_path / "x.db")
    store.add_cost(event(outcome="weird"))
    with pytest.raises(StoreError, match="CHECK constraint"):
        store.flush()
    store.close()


def test_summary_groups_by_the_requested_dimensions(tmp_path):
    with SQLiteStore(tmp_path / "x.db") as store:
        store.add_cost(event(id="g1", usage=Usage(10, 5, 0, 0, 15, 0.25)))
        store.add_cost(
            event(id="g2", step="reply", module="drafting", usage=Usage(20, 10, 0, 0, 30, 0.5), user_id="u2")
        )
        store.add_cost(
            event(
                id="g3",
                step="reply",
                module="drafting",
                usage=Usage(1, 1, 0, 0, 2, 0.125),
                attempt=2,
                outcome="schema_mismatch",
            )
        )
        by_module = store.cost_summary(("module",))
        by_user = store.cost_summary(("user",))
        total = store.cost_summary(())
    assert [(row["module"], row["calls"], row["cost_usd"]) for row in by_module] == [
        ("drafting", 2, 0.625),
        ("triage", 1, 0.25),
    ]
    assert {row["user"]: row["cost_usd"] for row in by_user} == {"u1": 0.375, "u2": 0.5}
    assert total[0]["calls"] == 3 and total[0]["total_tokens"] == 47


def test_summary_filters_by_run_and_since(tmp_path):
    with SQLiteStore(tmp_path / "x.db") as store:
        store.add_cost(event(id="old", created_at="2020-01-01T00:00:00.000Z"))
        store.add_cost(event(id="new", run_id="run-b", created_at=since_timestamp("1h")))
        assert store.cost_summary((), since="7d")[0]["calls"] == 1
        assert store.cost_summary((), run_id="run-a")[0]["calls"] == 1
        days = {row["day"] for row in store.cost_summary(("day",), since="2019-12-31")}
        assert days == {"2020-01-01", since_timestamp("1h")[:10]}


def test_unknown_grouping_is_a_usage_error(tmp_path):
    with SQLiteStore(tmp_path / "x.db") as store, pytest.raises(UsageError, match="choose from"):
        store.cost_summary(("colour",))


def test_since_accepts_durations_and_dates():
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert since_timestamp("7d", now) == "2026-11-17T12:00:00.000Z"
    assert since_timestamp("30m", now) == "2026-11-24T11:30:00.000Z"
    assert since_timestamp("2026-11-01") == "2026-11-01T00:00:00.000Z"
    with pytest.raises(UsageError):
        since_timestamp("last tuesday")


def test_postgres_urls_are_refused_clearly(tmp_path):
    with pytest.raises(StoreError, match="PostgreSQL is not supported yet"):
        SQLiteStore("postgresql://localhost/test")
