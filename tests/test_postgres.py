"""PostgreSQL as the ledger: the same answers as SQLite, and many workers sharing one run safely."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from runner.store import Store

from .conftest import EXAMPLES, ROOT, TEST_KEY, invoke

CHAIN = ROOT / "bench" / "pipelines" / "chain3.yaml"


def write_records(path, start, count):
    path.write_text(
        "".join(
            json.dumps({"id": f"r{index:04d}", "text": f"Message {index}: refund please"}) + "\n"
            for index in range(start, start + count)
        )
    )
    return str(path)


@pytest.fixture
def live(monkeypatch, fake_server):
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    return fake_server.fake


def test_costs_are_the_same_on_both_backends(capsys, monkeypatch, tmp_path, live, postgres_url, postgres_schema):
    data = write_records(tmp_path / "in.jsonl", 0, 6)
    reports = {}
    for name, db, schema in (("sqlite", str(tmp_path / "a.db"), None), ("postgres", postgres_url, postgres_schema)):
        extra = ["--db-schema", schema] if schema else []
        assert (
            invoke(
                capsys,
                monkeypatch,
                "run",
                str(CHAIN),
                "--inputs",
                data,
                "--key-field",
                "id",
                "--db",
                db,
                "--no-cache",
                *extra,
            ).code
            == 0
        )
        result = invoke(capsys, monkeypatch, "costs", "--by", "step,model", "--format", "json", "--db", db, *extra)
        assert result.code == 0, result.err
        reports[name] = sorted(json.loads(result.out), key=lambda row: row["step"])
        runs = json.loads(invoke(capsys, monkeypatch, "runs", "--format", "json", "--db", db, *extra).out)
        assert [run["records_ok"] for run in runs] == [6]
    assert reports["sqlite"] == reports["postgres"]
    assert [row["calls"] for row in reports["postgres"]] == [6, 6, 6]


def test_readme_sql_gives_the_right_totals(capsys, monkeypatch, tmp_path, live, postgres_url, postgres_schema):
    readme = (ROOT / "README.md").read_text()
    queries = re.findall(r"```sql\n(.*?)```", readme, re.DOTALL)[0]
    without_comments = re.sub(r"^--.*$", "", queries, flags=re.MULTILINE)
    statements = [statement.strip() for statement in without_comments.split(";") if statement.strip()]
    assert len(statements) >= 2
    data = write_records(tmp_path / "in.jsonl", 0, 4)
    for user in ("alice", "bob"):
        args = (
            "run",
            str(CHAIN),
            "--inputs",
            data,
            "--db",
            postgres_url,
            "--db-schema",
            postgres_schema,
            "--user",
            user,
        )
        assert invoke(capsys, monkeypatch, *args).code == 0
    with Store(postgres_url, schema=postgres_schema) as store:
        rows = store.cost_rows()
        paid = sum(row["cost_usd"] for row in rows)
        for statement in statements:
            results = store._db.query(statement)
            total = sum(float(row[list(row)[-1]]) for row in results)
            assert total == pytest.approx(paid), statement
        per_user = {row["user_id"]: float(row[list(row)[-1]]) for row in store._db.query(statements[1])}
    assert per_user["alice"] == pytest.approx(paid)  # bob's re-run came from the cache
    assert per_user["bob"] == 0


def test_two_workers_share_one_run_cache_and_budget(tmp_path, fake_server, postgres_url, postgres_schema):
    fake = fake_server.fake
    fake.latency_s = 0.005
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OPENROUTER", "PIPELINE"))}
    env.update(
        OPENROUTER_API_KEY=TEST_KEY,
        OPENROUTER_BASE_URL=fake_server.base_url,
        PIPELINE_DB=postgres_url,
        PIPELINE_DB_SCHEMA=postgres_schema,
    )
    cap = 0.0006

    def worker(name, start):
        data = write_records(tmp_path / f"{name}.jsonl", start, 40)
        command = [sys.executable, "-m", "runner", "run", str(CHAIN), "--inputs", data, "--key-field", "id",
                   "--run-id", "shared", "--concurrency", "8", "--max-cost", str(cap), "--output", str(tmp_path / f"{name}.out")]  # fmt: skip
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )

    first, second = worker("one", 0), worker("two", 40)
    codes = [first.wait(120), second.wait(120)]
    assert codes == [3, 3], first.stderr.read() + second.stderr.read()
    with Store(postgres_url, schema=postgres_schema) as store:
        rows = store.cost_rows()
        spent = sum(row["cost_usd"] for row in rows)
        runs = store.runs()
    assert [run["id"] for run in runs] == ["shared"]
    assert len(rows) == len({row["id"] for row in rows}) == fake.billed_calls  # one row per billed reply
    assert 0 < spent <= cap  # the two workers together never passed the shared cap
    assert fake.total_cost == pytest.approx(spent)


def test_the_response_cache_is_shared_between_workers(
    capsys, monkeypatch, tmp_path, live, postgres_url, postgres_schema
):
    data = write_records(tmp_path / "in.jsonl", 0, 3)
    common = ("--inputs", data, "--db", postgres_url, "--db-schema", postgres_schema)
    assert invoke(capsys, monkeypatch, "run", str(CHAIN), *common).code == 0
    billed = live.billed_calls
    second = invoke(capsys, monkeypatch, "run", str(CHAIN), *common, "--run-id", "another-worker")
    assert second.code == 0 and "0 billed, 9 from cache" in second.err
    assert live.billed_calls == billed


def test_single_record_and_show_on_postgres(capsys, monkeypatch, live, postgres_url, postgres_schema):
    common = ("--db", postgres_url, "--db-schema", postgres_schema)
    run = invoke(capsys, monkeypatch, "run", str(EXAMPLES / "ticket_triage.yaml"), "--input", "ticket=crash", *common)
    assert run.code == 0
    run_id = run.err.split("run ", 1)[1].split(":", 1)[0]
    shown = json.loads(invoke(capsys, monkeypatch, "show", run_id, "--format", "json", *common).out)
    assert {step["step"] for step in shown["steps"]} >= {"classify", "extract"}
    migrated = invoke(capsys, monkeypatch, "db", "migrate", *common)
    assert migrated.code == 0 and "up to date" in migrated.out and "schema " + postgres_schema in migrated.out
