"""`pipeline run --executor ray` (DESIGN §11) on a local Ray cluster and the real PostgreSQL: the same
outputs and cost rows as the local executor, a worker killed mid-block, the cluster-wide cap and rate
limit, `--resume` after a budget stop, and the refusals (SQLite, the extra missing).

The cluster starts once for the module (Ray's startup takes seconds); the tests skip with the reason
when the extra `ray` is not installed or PostgreSQL is not reachable."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import psycopg
import pytest

from runner.fake.server import FakeServer
from runner.fake.traffic import MeteredOpenRouter, busiest_window

from .conftest import ROOT, TEST_KEY, invoke, write_pipeline

CHAIN = ROOT / "bench" / "pipelines" / "chain3.yaml"
NO_RAY = "the Ray extra is not installed: pip install 'pipeline-runner[ray]'"
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason=NO_RAY)


@pytest.fixture(scope="module")
def cluster():
    """One local cluster of 2 CPUs for the module; its workers take the test key from the environment."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip(NO_RAY)
    import ray

    saved = os.environ.get("OPENROUTER_API_KEY")
    os.environ["OPENROUTER_API_KEY"] = TEST_KEY
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    if saved is None:
        os.environ.pop("OPENROUTER_API_KEY", None)
    else:
        os.environ["OPENROUTER_API_KEY"] = saved


@pytest.fixture
def fake(monkeypatch, tmp_path, cluster):
    with FakeServer(MeteredOpenRouter()) as server:
        monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
        monkeypatch.setenv("OPENROUTER_BASE_URL", server.base_url)
        monkeypatch.setenv("PIPELINE_CACHE_DIR", str(tmp_path / "cache"))
        yield server.fake


@pytest.fixture
def pg(postgres_url, postgres_schema):
    """The options that put a run in this test's own PostgreSQL schema."""
    return ("--db", postgres_url, "--db-schema", postgres_schema)


def rows(postgres_url, schema, sql):
    with psycopg.connect(postgres_url) as db:
        db.execute(f'SET search_path TO "{schema}"')
        cursor = db.execute(sql)
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def write_records(path, count, field="text"):
    path.write_text(
        "".join(json.dumps({"id": f"r{index:03d}", field: f"Message {index}"}) + "\n" for index in range(count))
    )
    return str(path)


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_id_of(err):
    return err.split("run ", 1)[1].split(":", 1)[0]


def test_a_ray_run_gives_the_local_runs_outputs_and_cost_rows(
    capsys, monkeypatch, tmp_path, fake, pg, postgres_url, postgres_schema
):
    data = write_records(tmp_path / "in.jsonl", 40)
    common = ("run", str(CHAIN), "--inputs", data, "--key-field", "id", "--no-cache", "--ordered", *pg)
    local = invoke(capsys, monkeypatch, *common, "--output", str(tmp_path / "local.jsonl"))
    assert local.code == 0, local.err
    billed = fake.billed_calls
    ray_run = invoke(capsys, monkeypatch, *common, "--output", str(tmp_path / "ray.jsonl"),
                     "--executor", "ray", "--workers", "2", "--block-size", "6")  # fmt: skip
    assert ray_run.code == 0, ray_run.err
    assert "records: 40 ok" in ray_run.err and "calls: 120 billed" in ray_run.err  # the driver counts every block
    assert fake.billed_calls - billed == 120
    # the same lines in the same (input) order
    assert read_lines(tmp_path / "ray.jsonl") == read_lines(tmp_path / "local.jsonl")
    columns = "record_key, step, attempt, outcome, cached, cost_usd, prompt_tokens, completion_tokens, model"
    by_run = {
        run: rows(
            postgres_url,
            postgres_schema,
            f"SELECT {columns} FROM cost_records WHERE run_id = '{run}' ORDER BY record_key, step, attempt",
        )
        for run in (run_id_of(local.err), run_id_of(ray_run.err))
    }
    local_rows, ray_rows = by_run.values()
    assert len(ray_rows) == 120 and ray_rows == local_rows
    run = rows(
        postgres_url, postgres_schema, f"SELECT status, records_ok FROM runs WHERE id = '{run_id_of(ray_run.err)}'"
    )
    assert run == [{"status": "ok", "records_ok": 40}]  # the driver finished the run, not a worker


KILLER = """
import os, signal, time
from pathlib import Path


def check(text, marker, log):
    with open(log, "a") as handle:
        handle.write(text + "\\n")
    if text == "Message 17" and not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        time.sleep(1.5)  # the rest of the block finishes (and is stored) first
        os.kill(os.getpid(), signal.SIGKILL)
    return {"seen": text}
"""


def test_a_killed_worker_loses_nothing_and_pays_nothing_twice(
    capsys, monkeypatch, tmp_path, fake, pg, postgres_url, postgres_schema
):
    (tmp_path / "killer.py").write_text(KILLER)
    marker, log = tmp_path / "killed.pid", tmp_path / "calls.log"
    pipeline = write_pipeline(
        tmp_path,
        f"""
name: killed-worker
defaults: {{model: google/gemini-2.5-flash-lite, max_tokens: 50}}
steps:
  ask:
    prompt: "Say something about {{{{ input.text }}}}"
  check:
    call: killer:check
    args: {{text: "{{{{ input.text }}}}", marker: "{marker}", log: "{log}"}}
    needs: [ask]
""",
    )
    data = write_records(tmp_path / "in.jsonl", 30)
    result = invoke(capsys, monkeypatch, "run", str(pipeline), "--inputs", data, "--key-field", "id", *pg,
                    "--executor", "ray", "--workers", "2", "--block-size", "10", "--output", str(tmp_path / "out.jsonl"))  # fmt: skip
    assert result.code == 0, result.err
    assert marker.exists()  # a worker process did die
    lines = read_lines(tmp_path / "out.jsonl")
    assert sorted(line["key"] for line in lines) == [f"r{index:03d}" for index in range(30)]
    assert {line["status"] for line in lines} == {"ok"}
    # records finished before the death were not run again: only the killed record ran its code step twice
    runs = log.read_text().splitlines()
    assert {text: runs.count(text) for text in set(runs) if runs.count(text) > 1} == {"Message 17": 2}
    costs = rows(postgres_url, postgres_schema, "SELECT id, record_key, cached FROM cost_records")
    paid = [row for row in costs if not row["cached"]]
    assert len(paid) == len({row["record_key"] for row in paid}) == 30  # one billed reply per record, none twice
    assert len({row["id"] for row in costs}) == len(costs)
    # the killed record's reply had reached the ledger: the retry took it from the cache
    assert [row["record_key"] for row in costs if row["cached"]] == ["r017"]
    assert fake.billed_calls == 30
    # the summary counts what the dead worker paid for too (the ledger's figures, not only the retry's)
    assert "records: 30 ok" in result.err and "calls: 30 billed, 1 from cache" in result.err


def test_the_cap_and_the_rate_limit_hold_for_the_whole_cluster(capsys, monkeypatch, tmp_path, fake, pg):
    fake.latency_s = 0.05
    pipeline = write_pipeline(
        tmp_path,
        """
name: limited
defaults: {model: google/gemini-2.5-flash-lite, max_tokens: 50}
steps:
  fast:
    prompt: "One: {{ input.text }}"
  slow:
    model: openai/gpt-4o-mini
    prompt: "Two: {{ input.text }}"
    rate_limit: {requests: 4, per_seconds: 1}
""",
    )
    data = write_records(tmp_path / "in.jsonl", 12)
    result = invoke(capsys, monkeypatch, "run", str(pipeline), "--inputs", data, *pg, "--concurrency", "3",
                    "--executor", "ray", "--workers", "2", "--block-size", "6", "--output", str(tmp_path / "out.jsonl"))  # fmt: skip
    assert result.code == 0, result.err
    assert fake.chat_requests == 24
    # each worker alone may have 3 in flight; together they still had at most 3
    assert fake.max_chat_in_flight <= 3
    arrivals = [at for at, model in fake.chat_arrivals if model == "openai/gpt-4o-mini"]
    assert len(arrivals) == 12
    # 4 a second across both workers (each alone would send 4 at once: 8); the window is measured at the
    # fake, so it is taken a little shorter for the trip from the limiter's booking to the fake (a new
    # connection, a busy machine)
    assert busiest_window(arrivals, 0.8) <= 4


def test_resume_finishes_a_ray_run_that_hit_its_budget(
    capsys, monkeypatch, tmp_path, fake, pg, postgres_url, postgres_schema
):
    data = write_records(tmp_path / "in.jsonl", 24)
    common = ("run", str(CHAIN), "--inputs", data, "--key-field", "id", *pg, "--executor", "ray", "--workers", "2",
              "--block-size", "4", "--concurrency", "2")  # fmt: skip
    first = invoke(capsys, monkeypatch, *common, "--max-cost", "0.0004", "--output", str(tmp_path / "one.jsonl"))
    assert first.code == 3, first.err
    assert "--max-cost" in first.err and "resume" in first.err
    run_id = run_id_of(first.err)
    done_first = len(read_lines(tmp_path / "one.jsonl"))
    assert 0 < done_first < 24
    second = invoke(capsys, monkeypatch, *common, "--resume", run_id, "--output", str(tmp_path / "two.jsonl"))
    assert second.code == 0, second.err
    lines = read_lines(tmp_path / "two.jsonl")
    assert sorted(line["key"] for line in lines) == [f"r{index:03d}" for index in range(24)]
    assert {line["status"] for line in lines} == {"ok"}
    costs = rows(
        postgres_url, postgres_schema, f"SELECT record_key, step, cached FROM cost_records WHERE run_id = '{run_id}'"
    )
    paid = [(row["record_key"], row["step"]) for row in costs if not row["cached"]]
    assert len(paid) == len(set(paid)) == fake.billed_calls  # nothing answered before was paid again
    assert len(set(paid)) == 72


@needs_ray
def test_sqlite_is_refused_with_the_reason(capsys, monkeypatch, tmp_path):
    data = write_records(tmp_path / "in.jsonl", 2)
    result = invoke(capsys, monkeypatch, "run", str(CHAIN), "--inputs", data, "--mock", "--executor", "ray",
                    "--db", str(tmp_path / "x.db"))  # fmt: skip
    assert result.code == 2
    assert "needs a PostgreSQL --db" in result.err and "one machine's" in result.err
    assert not (tmp_path / "x.db").exists()  # refused before anything was created


def test_without_the_extra_the_message_says_how_to_install_it(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if it were not installed
    data = write_records(tmp_path / "in.jsonl", 2)
    result = invoke(capsys, monkeypatch, "run", str(CHAIN), "--inputs", data, "--mock", "--executor", "ray",
                    "--db", "postgresql://nobody@127.0.0.1:1/none")  # fmt: skip
    assert result.code == 3
    assert "pip install 'pipeline-runner[ray]'" in result.err


def test_ray_flags_need_the_ray_executor(capsys, monkeypatch, tmp_path):
    data = write_records(tmp_path / "in.jsonl", 2)
    result = invoke(capsys, monkeypatch, "run", str(CHAIN), "--inputs", data, "--mock", "--workers", "2")
    assert result.code == 2 and "--executor ray" in result.err


@needs_ray
def test_a_workers_error_reaches_the_user_as_its_own_message():
    import asyncio

    import ray

    from runner.cluster.backend import block_result
    from runner.errors import ConfigurationError, RunStopped

    async def outcome(error):
        future = asyncio.get_running_loop().create_future()
        future.set_exception(error)
        return block_result(ray, future)

    missing_key = ConfigurationError("OPENROUTER_API_KEY is not set on a Ray worker's node")
    remote = ray.exceptions.RayTaskError("run_block", "Traceback (most recent call last): ...", missing_key)
    with pytest.raises(ConfigurationError) as raised:
        asyncio.run(outcome(remote))
    assert "Traceback" not in str(raised.value) and "not set on a Ray worker" in str(raised.value)
    with pytest.raises(RunStopped, match="its Ray worker died 4 times"):
        asyncio.run(outcome(ray.exceptions.WorkerCrashedError()))


SUDDEN = """
import os, signal, time
from pathlib import Path


def check(text, marker):
    if text == "Message 5" and not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        time.sleep(0.4)  # the block's model calls are sent or queued (their reservations made), not answered
        os.kill(os.getpid(), signal.SIGKILL)
    return {"seen": text}
"""


def test_a_worker_killed_with_requests_in_flight_leaves_no_permit_or_reservation_behind(
    capsys, monkeypatch, tmp_path, fake, pg, postgres_url, postgres_schema
):
    fake.latency_s = 1.0
    (tmp_path / "sudden.py").write_text(SUDDEN)
    marker = tmp_path / "killed.pid"
    pipeline = write_pipeline(
        tmp_path,
        f"""
name: sudden-death
defaults: {{model: google/gemini-2.5-flash-lite, max_tokens: 50}}
steps:
  ask:
    prompt: "Say something about {{{{ input.text }}}}"
  check:
    call: sudden:check
    args: {{text: "{{{{ input.text }}}}", marker: "{marker}"}}
""",
    )
    data = write_records(tmp_path / "in.jsonl", 16)
    # --concurrency 2: most of the dying worker's requests are still queued at the limiter when it dies
    result = invoke(capsys, monkeypatch, "run", str(pipeline), "--inputs", data, "--key-field", "id", *pg, "--max-cost", "1",
                    "--concurrency", "2", "--executor", "ray", "--workers", "2", "--block-size", "8",
                    "--output", str(tmp_path / "out.jsonl"))  # fmt: skip
    assert result.code == 0, result.err
    assert marker.exists()
    assert len(read_lines(tmp_path / "out.jsonl")) == 16
    costs = rows(postgres_url, postgres_schema, "SELECT record_key, cost_usd, cached FROM cost_records")
    paid = [row["record_key"] for row in costs if not row["cached"]]
    assert len(paid) == len(set(paid)) == 16
    # the dead worker's reservations were given back: the run's budget holds nothing, and its spend is the ledger's
    [budget] = rows(postgres_url, postgres_schema, "SELECT spent_usd, reserved_usd FROM budgets")
    assert budget["reserved_usd"] == pytest.approx(0, abs=1e-12)
    assert budget["spent_usd"] == pytest.approx(sum(row["cost_usd"] for row in costs))
    assert fake.billed_calls >= 16  # requests in flight at the death were never recorded: they were asked again


def test_the_limiter_gives_back_what_a_dead_attempt_held():
    import asyncio

    from runner.cluster.limiter import Limiter

    async def scenario():
        limiter = Limiter(2, {})
        assert limiter.begin("block-1", "first") == 0
        await limiter.acquire("m", "first")
        await limiter.acquire("m", "first")
        queued = asyncio.ensure_future(limiter.acquire("m", "first"))  # waits: both permits are taken
        limiter.reserved("first", 0.25)
        limiter.reserved("first", 0.5)
        limiter.reserved("first", -0.25)  # settled
        await asyncio.sleep(0)
        # the worker died: the block runs again and first takes back what the dead attempt held
        leaked = limiter.begin("block-1", "second")
        await asyncio.wait_for(queued, 1)  # the dead worker's queued request is turned away, taking nothing
        await asyncio.wait_for(limiter.acquire("m", "second"), 1)  # both permits are free for the new attempt
        await asyncio.wait_for(limiter.acquire("m", "second"), 1)
        return leaked, limiter.stats()

    leaked, stats = asyncio.run(scenario())
    assert leaked == 0.5
    assert stats == {"in_flight": 2, "max_in_flight": 2}
