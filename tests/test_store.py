from __future__ import annotations

import json
import socket
import subprocess
import sys
from datetime import UTC, datetime
from types import MappingProxyType

import pytest

from runner.chat.reply import Reply, Usage
from runner.chat.verdict import Verdict
from runner.cli.options import since_timestamp
from runner.errors import StoreError, UsageError
from runner.run.results import CacheEntry, CostEvent, RecordResult
from runner.store import Store
from runner.store.db import open_database
from runner.store.liveness import RunProcess
from runner.store.migrations import MIGRATIONS, migrate

from .conftest import invoke

DESIGN_COLUMNS = [
    ("id", "TEXT"), ("run_id", "TEXT"), ("record_key", "TEXT"), ("step", "TEXT"), ("module", "TEXT"),
    ("requested_model", "TEXT"), ("model", "TEXT"), ("provider", "TEXT"), ("prompt_tokens", "INTEGER"),
    ("completion_tokens", "INTEGER"), ("reasoning_tokens", "INTEGER"), ("cached_tokens", "INTEGER"),
    ("total_tokens", "INTEGER"), ("cost_usd", "REAL"), ("user_id", "TEXT"), ("attempt", "INTEGER"),
    ("outcome", "TEXT"), ("cached", "INTEGER"), ("latency_ms", "INTEGER"), ("created_at", "TEXT"),
    # m004: DESIGN.md §4's later columns, and where a duplicate generation id was kept
    ("cache_write_tokens", "INTEGER"), ("is_byok", "INTEGER"), ("upstream_cost_usd", "REAL"),
    ("cost_source", "TEXT"), ("native_finish_reason", "TEXT"), ("duplicate_of", "TEXT"),
    # m007: the for_each element, the tool round, the Batch API batch
    ("item_index", "INTEGER"), ("round", "INTEGER"), ("batch_id", "TEXT"),
]  # fmt: skip
GENERATIONS_COLUMNS = [
    "id", "latency_ms", "generation_time_ms", "provider_name", "provider_responses", "native_tokens_prompt",
    "native_tokens_completion", "native_tokens_reasoning", "native_tokens_cached", "cache_discount",
    "upstream_cost_usd", "total_cost_usd", "is_byok", "finish_reason", "native_finish_reason", "fetched_at",
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


POSTGRES_TYPES = {"TEXT": "text", "INTEGER": "integer", "REAL": "double precision"}


def test_migrations_create_design_tables_on_a_blank_database(backend):
    target, schema = backend
    with Store(target, schema=schema) as store:
        if store.backend == "sqlite":
            columns = [(row["name"], row["type"]) for row in store._db.query("PRAGMA table_info(cost_records)")]
            generations = [row["name"] for row in store._db.query("PRAGMA table_info(generations)")]
            tables = {row["name"] for row in store._db.query("SELECT name FROM sqlite_master WHERE type='table'")}
            assert store._db.one("PRAGMA journal_mode")[0] == "wal"
            assert columns == DESIGN_COLUMNS
        else:
            columns = store._db.query(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_name = 'cost_records' AND table_schema = ? ORDER BY ordinal_position",
                (schema,),
            )
            tables = {
                row["table_name"]
                for row in store._db.query(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", (schema,)
                )
            }
            expected = [(name, POSTGRES_TYPES[kind]) for name, kind in DESIGN_COLUMNS]
            assert [(row["column_name"], row["data_type"]) for row in columns] == expected
            generations = [
                row["column_name"]
                for row in store._db.query(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_name = 'generations' AND table_schema = ? ORDER BY ordinal_position",
                    (schema,),
                )
            ]
    assert {
        "cost_records",
        "runs",
        "step_results",
        "records",
        "response_cache",
        "budgets",
        "schema_migrations",
        "generations",
    } <= tables
    assert generations == GENERATIONS_COLUMNS


def test_migrations_apply_once(backend):
    target, schema = backend
    Store(target, schema=schema).close()
    database = open_database(target, schema)
    try:
        assert migrate(database) == []
        versions = [row["version"] for row in database.query("SELECT version FROM schema_migrations ORDER BY version")]
    finally:
        database.close()
    assert versions == [number for number, _ in MIGRATIONS]


def test_the_same_row_written_twice_is_one_row(backend, caplog):
    with Store(backend[0], schema=backend[1]) as store:
        store.add_cost(event())
        store.add_cost(event())
        store.flush()
        store.add_cost(event())  # a later flush writing the same reply again
        assert len(store.cost_rows()) == 1
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


@pytest.mark.parametrize("same_flush", [True, False])
def test_a_second_reply_under_a_recorded_generation_id_is_kept_and_logged(backend, caplog, same_flush):
    first = event(id="gen-dup", usage=Usage(10, 5, 0, 0, 15, 0.25))
    second = event(id="gen-dup", run_id="run-b", step="reply", usage=Usage(20, 10, 0, 0, 30, 0.5), attempt=2)
    with Store(backend[0], schema=backend[1]) as store:
        store.add_cost(first)
        if not same_flush:
            store.flush()
        store.add_cost(second)
        rows = store.cost_rows()
        summary = store.cost_summary(())
    assert sorted((row["run_id"], row["step"], row["cost_usd"]) for row in rows) == [
        ("run-a", "classify", 0.25),
        ("run-b", "reply", 0.5),
    ]
    kept = next(row for row in rows if row["run_id"] == "run-b")
    assert kept["id"].startswith("gen-dup#dup-") and kept["duplicate_of"] == "gen-dup"
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1 and all(word in errors[0] for word in ("gen-dup", "run-b", "reply", kept["id"]))
    assert summary[0]["duplicates"] == 1 and summary[0]["calls"] == 2 and summary[0]["cost_usd"] == 0.75


def test_costs_command_shows_duplicates(backend, capsys, monkeypatch):
    with Store(backend[0], schema=backend[1]) as store:
        store.add_cost(event(id="gen-dup"))
        store.add_cost(event(id="gen-dup", record_key="2"))
    schema_args = ("--db-schema", backend[1]) if backend[1] else ()
    result = invoke(capsys, monkeypatch, "costs", "--by", "step", "--db", backend[0], *schema_args)
    assert result.code == 0, result.err
    header = result.out.splitlines()[0].split()
    assert "duplicates" in header and result.out.splitlines()[2].split()[header.index("duplicates")] == "1"
    assert "kept under suffixed ids" in result.err


def test_byok_upstream_spend_and_cost_sources_are_stored(backend):
    byok = Usage(100, 50, 0, 0, 150, 0.0002, cache_write_tokens=40, is_byok=True, upstream_cost_usd=0.004)
    with Store(backend[0], schema=backend[1]) as store:
        store.add_cost(event(id="g1", usage=byok, native_finish_reason="STOP"))
        store.add_cost(event(id="g2", usage=Usage(10, 5, 0, 0, 15, 0.001), cost_source="estimate"))
        rows = {row["id"]: row for row in store.cost_rows()}
        plain = store.cost_summary(())
        upstream = store.cost_summary((), upstream=True)
        by_source = {row["cost_source"]: row["calls"] for row in store.cost_summary(("cost_source",))}
    assert (rows["g1"]["is_byok"], rows["g1"]["upstream_cost_usd"], rows["g1"]["cache_write_tokens"]) == (1, 0.004, 40)
    assert rows["g1"]["native_finish_reason"] == "STOP" and rows["g1"]["cost_source"] == "usage"
    assert rows["g2"]["cost_source"] == "estimate" and rows["g2"]["upstream_cost_usd"] is None
    assert "byok_upstream_usd" not in plain[0] and plain[0]["estimated"] == 1
    assert upstream[0]["byok_upstream_usd"] == 0.004 and upstream[0]["byok_calls"] == 1
    assert by_source == {"usage": 1, "estimate": 1}


def test_cost_source_must_be_a_known_value(backend):
    store = Store(backend[0], schema=backend[1])
    store.add_cost(event(cost_source="guess"))
    with pytest.raises(StoreError, match=r"(?i)check constraint"):
        store.flush()
    store.close()


def test_outcome_must_be_a_known_value(backend):
    store = Store(backend[0], schema=backend[1])
    store.add_cost(event(outcome="weird"))
    with pytest.raises(StoreError, match=r"(?i)check constraint"):
        store.flush()
    store.close()


def test_summary_groups_by_the_requested_dimensions(backend):
    with Store(backend[0], schema=backend[1]) as store:
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


def test_summary_filters_by_run_and_since(backend):
    with Store(backend[0], schema=backend[1]) as store:
        store.add_cost(event(id="old", created_at="2020-01-01T00:00:00.000Z"))
        store.add_cost(event(id="new", run_id="run-b", created_at=since_timestamp("1h")))
        assert store.cost_summary((), since=since_timestamp("7d"))[0]["calls"] == 1
        assert store.cost_summary((), run_id="run-a")[0]["calls"] == 1
        days = {row["day"] for row in store.cost_summary(("day",), since=since_timestamp("2019-12-31"))}
        assert days == {"2020-01-01", since_timestamp("1h")[:10]}


def test_unknown_grouping_is_a_usage_error(backend):
    with Store(backend[0], schema=backend[1]) as store, pytest.raises(UsageError, match="choose from"):
        store.cost_summary(("colour",))


def test_since_accepts_durations_and_dates():
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert since_timestamp("7d", now) == "2026-11-17T12:00:00.000Z"
    assert since_timestamp("30m", now) == "2026-11-24T11:30:00.000Z"
    assert since_timestamp("2026-11-01") == "2026-11-01T00:00:00.000Z"
    with pytest.raises(UsageError):
        since_timestamp("last tuesday")


def test_an_unreachable_postgres_is_a_clear_store_error():
    with pytest.raises(StoreError, match=r"cannot open the database postgresql://u:\*\*\*@127.0.0.1:9/x"):
        Store("postgresql://u:secret@127.0.0.1:9/x")


def test_two_processes_migrating_together_migrate_once(postgres_url, postgres_schema):
    import threading

    errors = []

    def open_store():
        try:
            Store(postgres_url, schema=postgres_schema).close()
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with Store(postgres_url, schema=postgres_schema) as store:
        assert store._db.one("SELECT COUNT(*) FROM schema_migrations")[0] == len(MIGRATIONS)


def test_budget_reservations_are_atomic(backend):
    with Store(backend[0], schema=backend[1]) as store:
        store.open_budget("run-b", 1.0, fresh=False)
        assert store.try_reserve("run-b", 0.6)[0]
        assert not store.try_reserve("run-b", 0.6)[0]  # 0.6 + 0.6 > 1.0 while the first is in flight
        store.settle_budget("run-b", 0.6, 0.1)
        ok, spent, cap = store.try_reserve("run-b", 0.6)
        assert ok and spent == pytest.approx(0.1) and cap == 1.0


def cache_entry(key: str, content: str, generation_id: str = "gen-1") -> CacheEntry:
    reply = Reply(generation_id, "m/x", "P", content, None, "stop", "stop", Usage(1, 1, 0, 0, 2, 0.01), None, 5)
    return CacheEntry(key, reply, Verdict("ok", content))


def test_the_cache_serves_each_endpoint_its_own_replies(backend):
    target, schema = backend
    with Store(target, schema=schema, endpoint="mock") as mock:
        mock.add_cost(event(id="gen-1-fake1"), cache_entry("k1", "[mock reply from m/x] hi", "gen-1-fake1"))
        mock.flush()
        assert mock.cached_reply("k1").reply.content == "[mock reply from m/x] hi"
    with Store(target, schema=schema, endpoint="https://openrouter.ai/api/v1") as live:
        assert live.cached_reply("k1") is None
        live.add_cost(
            event(id="gen-real", created_at=since_timestamp("1h")), cache_entry("k1", "a real answer", "gen-real")
        )
        assert live.cached_reply("k1").reply.content == "a real answer"
        stats = {row["endpoint"]: row for row in live.cache_stats()}
        assert set(stats) == {"mock", "https://openrouter.ai/api/v1"}
        assert stats["mock"]["entries"] == 1 and stats["mock"]["size_bytes"] > len("[mock reply from m/x] hi")
        assert live.clear_cache(mock_only=True) == 1
        assert live.clear_cache(older_than=since_timestamp("7d")) == 0
        assert [row["endpoint"] for row in live.cache_stats()] == ["https://openrouter.ai/api/v1"]
        assert live.clear_cache(older_than=since_timestamp("30m")) == 1 and live.cache_stats() == []


def test_m005_labels_the_fakes_old_cache_entries_and_runs_as_mock(backend, monkeypatch):
    target, schema = backend
    database = open_database(target, schema)
    try:
        monkeypatch.setattr("runner.store.migrations.MIGRATIONS", MIGRATIONS[:3])
        migrate(database)
        rows = [
            ("k-text", "gen-9-real1", json.dumps({"reply": {"content": "[mock reply from m/x] hello"}})),
            ("k-json", "gen-1764000000-fake000000000001", json.dumps({"reply": {"content": '{"a": 1}'}})),
            ("k-real", "gen-1764000000-abcdef", json.dumps({"reply": {"content": "a real answer"}})),
        ]
        for key, generation_id, reply in rows:
            database.execute(
                "INSERT INTO response_cache (key, generation_id, model, reply_json, created_at) VALUES (?, ?, 'm', ?, ?)",
                (key, generation_id, reply, "2026-11-01T00:00:00.000Z"),
            )
        for run_id, cost_id in (
            ("run-mock", "gen-1764000000-fake000000000002"),
            ("run-mock", "cached-18f2a-gen-1764000000-fake000000000001"),
            ("run-real", "gen-1764000000-xyz"),
            ("run-real", "cached-18f2b-gen-1764000000-fake000000000003"),  # a poisoned hit, beside real spend
        ):
            database.execute(
                "INSERT INTO runs (id, pipeline, pipeline_path, status, started_at) VALUES (?, 'p', 'p.yaml', 'ok', ?)"
                " ON CONFLICT (id) DO NOTHING",
                (run_id, "2026-11-01T00:00:00.000Z"),
            )
            database.execute(
                "INSERT INTO cost_records (id, run_id, record_key, step, module, requested_model, model, attempt,"
                " outcome, created_at) VALUES (?, ?, '1', 's', 'm', 'm', 'm', 1, 'ok', ?)",
                (cost_id, run_id, "2026-11-01T00:00:00.000Z"),
            )
        monkeypatch.undo()
        assert 5 in migrate(database)
        labels = {row["key"]: row["endpoint"] for row in database.query("SELECT key, endpoint FROM response_cache")}
        mock_runs = {row["id"]: row["mock"] for row in database.query("SELECT id, mock FROM runs")}
    finally:
        database.close()
    assert labels == {"k-text": "mock", "k-json": "mock", "k-real": "https://openrouter.ai/api/v1"}
    assert mock_runs == {"run-mock": 1, "run-real": 0}
    with Store(target, schema=schema) as store:
        assert store.clear_cache(mock_only=True) == 2
        assert store.cost_summary(("run",))[0]["run"] == "run-real"
        assert {row["run"] for row in store.cost_summary(("run",), include_mock=True)} == {"run-mock", "run-real"}


def test_runs_whose_process_is_gone_become_interrupted(backend):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = RunProcess(int(finished.stdout), socket.gethostname())
    with Store(backend[0], schema=backend[1]) as store:
        store.start_run("run-killed", "p", "p.yaml", None, process=dead)
        store.add_record(RecordResult("1", "ok", {"a": 1}, MappingProxyType({}), run_id="run-killed"))
        store.start_run("run-alive", "p", "p.yaml", None)
        store.start_run("run-elsewhere", "p", "p.yaml", None, process=RunProcess(dead.pid, "another-host"))
        assert store.mark_abandoned_runs() == ["run-killed"]
        statuses = {row["id"]: (row["status"], row["records_ok"]) for row in store.runs()}
    assert statuses == {"run-killed": ("interrupted", 1), "run-alive": ("running", 0), "run-elsewhere": ("running", 0)}


def test_a_cost_row_keeps_its_element_round_and_batch(backend):
    target, schema = backend
    with Store(target, schema=schema) as store:
        store.add_cost(event(id="gen-el", item_index=3, round=2, batch_id="batch-9"))
        store.add_cost(event(id="gen-plain"))
        store.flush()
        rows = {row["id"]: row for row in store._db.query("SELECT id, item_index, round, batch_id FROM cost_records")}
    assert (rows["gen-el"]["item_index"], rows["gen-el"]["round"], rows["gen-el"]["batch_id"]) == (3, 2, "batch-9")
    assert (rows["gen-plain"]["item_index"], rows["gen-plain"]["round"], rows["gen-plain"]["batch_id"]) == (None,) * 3
