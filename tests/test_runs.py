"""Runs end to end: mock replies kept apart from live ones, the response cache commands, stopped and
killed runs, resuming, and what `runs`, `show` and `costs` report."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from runner.fake import Fault

from .conftest import EXAMPLES, ROOT, TEST_KEY, cost_rows, invoke

CHAIN = ROOT / "bench" / "pipelines" / "chain3.yaml"
TRIAGE = str(EXAMPLES / "ticket_triage.yaml")
SUMMARY = re.compile(
    r"run (?P<run>run-\w+): records: (?P<ok>\d+) ok, (?P<failed>\d+) failed, (?P<skipped>\d+) skipped; "
    r"calls: (?P<calls>\d+) billed, .*cost: \$(?P<cost>[\d.]+)"
)


def write_records(path, count: int) -> str:
    path.write_text(
        "".join(json.dumps({"text": f"Message {index}: my invoice is wrong"}) + "\n" for index in range(count)),
        encoding="utf-8",
    )
    return str(path)


def go_live(monkeypatch, server) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", server.base_url)
    # Two fakes number their generation ids alike within a second (gen-<second>-fake<n>): the ledger keeps
    # one row per id, so the second fake numbers its replies apart from the --mock one's.
    server.fake._ids = itertools.count(10_000)


def runs_json(capsys, monkeypatch) -> dict[str, dict]:
    listing = invoke(capsys, monkeypatch, "runs", "--format", "json")
    assert listing.code == 0, listing.err
    return {row["id"]: row for row in json.loads(listing.out)}


def assert_one_figure(summary: re.Match, row: dict) -> None:
    """The summary line and `pipeline runs` tell the same story."""
    assert int(summary["ok"]) + int(summary["skipped"]) == row["records_ok"]
    assert int(summary["failed"]) == row["records_failed"]
    assert int(summary["calls"]) == row["calls"]
    assert float(summary["cost"]) == pytest.approx(row["cost_usd"], abs=1e-6)


# --- 1. mock replies never reach live runs -------------------------------------------------------------------------


def test_a_mock_run_then_a_live_run_pays_for_real_answers(capsys, monkeypatch, fake_server, db_path):
    mocked = invoke(capsys, monkeypatch, "run", TRIAGE, "--mock", "--input", "ticket=My app crashes")
    assert mocked.code == 0, mocked.err
    assert "--mock: the fake's costs, nothing was billed" in mocked.err
    mock_run = SUMMARY.search(mocked.err)["run"]

    go_live(monkeypatch, fake_server)
    live = invoke(capsys, monkeypatch, "run", TRIAGE, "--input", "ticket=My app crashes")
    assert live.code == 0, live.err
    live_run = SUMMARY.search(live.err)["run"]
    assert fake_server.fake.billed_calls >= 2  # the mock's replies were not served as the real answers
    live_rows = [row for row in cost_rows(db_path) if row["run_id"] == live_run]
    assert live_rows and not any(row["cached"] for row in live_rows)
    assert sum(row["cost_usd"] for row in live_rows) == pytest.approx(fake_server.fake.total_cost)

    runs = runs_json(capsys, monkeypatch)
    assert (runs[mock_run]["mock"], runs[live_run]["mock"]) == (True, False)
    assert "mock" in invoke(capsys, monkeypatch, "runs").out

    spend = invoke(capsys, monkeypatch, "costs", "--by", "run", "--format", "json")
    assert [row["run"] for row in json.loads(spend.out)] == [live_run]
    assert "--include-mock" in spend.err
    everything = invoke(capsys, monkeypatch, "costs", "--by", "run", "--format", "json", "--include-mock")
    assert {row["run"] for row in json.loads(everything.out)} == {mock_run, live_run}
    named = invoke(capsys, monkeypatch, "costs", "--run", mock_run, "--format", "json")
    assert named.code == 0 and json.loads(named.out)[0]["calls"] > 0

    again = invoke(capsys, monkeypatch, "run", TRIAGE, "--mock", "--input", "ticket=My app crashes")
    assert "0 billed" in again.err  # each endpoint still has its own cache


def test_a_mock_run_cannot_be_resumed_live(capsys, monkeypatch, tmp_path, fake_server):
    data = write_records(tmp_path / "in.jsonl", 2)
    mocked = invoke(capsys, monkeypatch, "run", str(CHAIN), "--mock", "--inputs", data)
    run_id = SUMMARY.search(mocked.err)["run"]
    go_live(monkeypatch, fake_server)
    resumed = invoke(capsys, monkeypatch, "run", str(CHAIN), "--inputs", data, "--resume", run_id)
    assert resumed.code == 2 and "is a --mock run: add --mock" in resumed.err
    assert fake_server.fake.chat_requests == 0


def test_cache_stats_and_clear(capsys, monkeypatch, fake_server):
    assert invoke(capsys, monkeypatch, "run", TRIAGE, "--mock", "--input", "ticket=Refund please").code == 0
    go_live(monkeypatch, fake_server)
    assert invoke(capsys, monkeypatch, "run", TRIAGE, "--input", "ticket=Refund please").code == 0

    stats = json.loads(invoke(capsys, monkeypatch, "cache", "stats", "--format", "json").out)
    endpoints = {row["endpoint"] for row in stats}
    assert endpoints == {"mock", fake_server.base_url}
    assert all(row["entries"] > 0 and row["size_bytes"] > 0 and row["oldest"] <= row["newest"] for row in stats)
    table = invoke(capsys, monkeypatch, "cache", "stats")
    assert "endpoint" in table.out and "total: " in table.out

    assert (
        invoke(capsys, monkeypatch, "cache", "clear", "--mock", "--older-than", "7d").out == "removed 0 cache entries\n"
    )
    mock_entries = sum(row["entries"] for row in stats if row["endpoint"] == "mock")
    cleared = invoke(capsys, monkeypatch, "cache", "clear", "--mock")
    assert cleared.out == f"removed {mock_entries} cache entries\n"
    left = json.loads(invoke(capsys, monkeypatch, "cache", "stats", "--format", "json").out)
    assert {row["endpoint"] for row in left} == {fake_server.base_url}
    bad = invoke(capsys, monkeypatch, "cache", "clear", "--older-than", "a while")
    assert bad.code == 2 and "--older-than 'a while'" in bad.err
    assert invoke(capsys, monkeypatch, "cache", "clear").code == 0
    assert "the response cache is empty" in invoke(capsys, monkeypatch, "cache", "stats").out


# --- 19. one figure for a stopped run; killed and interrupted runs ---------------------------------------------------


def test_a_budget_stop_tells_one_figure(capsys, monkeypatch, tmp_path, fake_server):
    go_live(monkeypatch, fake_server)
    fake_server.fake.latency_s = 0.01
    data = write_records(tmp_path / "in.jsonl", 40)
    stopped = invoke(capsys, monkeypatch, "run", str(CHAIN), "--inputs", data, "--max-cost", "0.0005", "--output",
                     str(tmp_path / "out.jsonl"), "--concurrency", "16")  # fmt: skip
    assert stopped.code == 3, stopped.err
    summary = SUMMARY.search(stopped.err)
    line = re.search(
        r"\$(?P<cost>[\d.]+) spent by the run, (?P<ok>\d+) record\(s\) finished and (?P<failed>\d+)", stopped.err
    )
    row = runs_json(capsys, monkeypatch)[summary["run"]]
    assert row["status"] == "stopped"
    assert_one_figure(summary, row)
    assert (float(line["cost"]), int(line["ok"]), int(line["failed"])) == (
        pytest.approx(row["cost_usd"], abs=1e-6),
        row["records_ok"],
        row["records_failed"],
    )
    assert row["cost_usd"] == pytest.approx(fake_server.fake.total_cost)


def subprocess_env(tmp_path, server) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OPENROUTER", "PIPELINE"))}
    env.update(
        OPENROUTER_API_KEY=TEST_KEY,
        OPENROUTER_BASE_URL=server.base_url,
        PIPELINE_DB=str(tmp_path / "ledger.db"),
        PIPELINE_CACHE_DIR=str(tmp_path / "cache"),
    )
    return env


def start_run(tmp_path, server, *extra: str, stdout=subprocess.DEVNULL) -> subprocess.Popen:
    data = write_records(tmp_path / "in.jsonl", 60)
    command = [sys.executable, "-m", "runner", "run", str(CHAIN), "--inputs", data, "--concurrency", "2", *extra]
    return subprocess.Popen(
        command, cwd=ROOT, env=subprocess_env(tmp_path, server), stdout=stdout, stderr=subprocess.PIPE, text=True
    )


def wait_for_calls(server, process, count: int) -> None:
    deadline = time.monotonic() + 60
    while server.fake.billed_calls < count and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be stopped"


def stored_records(tmp_path) -> int:
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        return db.execute("SELECT COUNT(*) FROM records").fetchone()[0]


def test_a_killed_run_is_marked_interrupted_by_the_next_command(capsys, monkeypatch, tmp_path, fake_server):
    fake_server.fake.latency_s = 0.01
    process = start_run(tmp_path, fake_server, "--output", str(tmp_path / "out.jsonl"))
    wait_for_calls(fake_server, process, 12)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        run_id, status, pid = db.execute("SELECT id, status, pid FROM runs").fetchone()
    assert (status, pid) == ("running", process.pid)

    monkeypatch.setenv("PIPELINE_DB", str(tmp_path / "ledger.db"))
    row = runs_json(capsys, monkeypatch)[run_id]
    assert row["status"] == "interrupted"
    assert row["records_ok"] + row["records_failed"] == stored_records(tmp_path) > 0
    shown = invoke(capsys, monkeypatch, "show", run_id)
    assert "status interrupted" in shown.out


def test_a_running_run_of_a_live_process_is_left_alone(capsys, monkeypatch, tmp_path, fake_server):
    fake_server.fake.latency_s = 0.02
    process = start_run(tmp_path, fake_server)
    try:
        wait_for_calls(fake_server, process, 3)
        monkeypatch.setenv("PIPELINE_DB", str(tmp_path / "ledger.db"))
        [row] = runs_json(capsys, monkeypatch).values()
        assert row["status"] == "running"
        monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
        twice = invoke(
            capsys, monkeypatch, "run", str(CHAIN), "--inputs", str(tmp_path / "in.jsonl"), "--resume", row["id"]
        )
        assert twice.code == 2 and "still running" in twice.err
    finally:
        process.kill()
        process.wait(10)


def test_ctrl_c_prints_the_resume_line_and_marks_the_run_interrupted(capsys, monkeypatch, tmp_path, fake_server):
    fake_server.fake.latency_s = 0.01
    process = start_run(tmp_path, fake_server, "--output", str(tmp_path / "out.jsonl"))
    wait_for_calls(fake_server, process, 12)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    summary = SUMMARY.search(err)
    assert "stopped: interrupted (Ctrl-C); finished records are kept" in err
    assert f"finish it later with: --resume {summary['run']}" in err
    assert "Traceback" not in err
    monkeypatch.setenv("PIPELINE_DB", str(tmp_path / "ledger.db"))
    row = runs_json(capsys, monkeypatch)[summary["run"]]
    assert row["status"] == "interrupted"
    assert_one_figure(summary, row)


def test_a_closed_output_stops_the_run_with_one_figure(capsys, monkeypatch, tmp_path, fake_server):
    fake_server.fake.latency_s = 0.005
    process = start_run(tmp_path, fake_server, stdout=subprocess.PIPE)
    assert json.loads(process.stdout.readline())["status"] == "ok"
    process.stdout.close()  # as `| head -1` does
    err = process.stderr.read()
    process.wait(30)
    assert process.returncode == 3, err  # a stop, like a full disk
    summary = SUMMARY.search(err)
    assert "stopped: the output pipe was closed" in err and f"--resume {summary['run']}" in err
    assert "Traceback" not in err and "Exception ignored" not in err
    monkeypatch.setenv("PIPELINE_DB", str(tmp_path / "ledger.db"))
    row = runs_json(capsys, monkeypatch)[summary["run"]]
    assert row["status"] == "stopped"
    assert_one_figure(summary, row)
    assert row["records_ok"] == stored_records(tmp_path) < 60


# --- 20. failures shown, resume of finished runs, option checks, --no-cache ------------------------------------------


def test_a_failed_single_record_prints_its_failure(capsys, monkeypatch, fake_server):
    go_live(monkeypatch, fake_server)
    fake_server.fake.enqueue(Fault("status", status=400, message="bad parameter"))
    result = invoke(capsys, monkeypatch, "run", str(CHAIN), "--input", "text=hello")
    assert result.code == 1
    line = json.loads(result.out)
    assert (line["status"], line["output"], line["key"]) == ("failed", None, 1)
    assert line["error"]["kind"] == "rejected" and line["error"]["step"] == "classify"


def test_show_lists_every_record_invalid_inputs_included(capsys, monkeypatch, tmp_path, fake_server):
    go_live(monkeypatch, fake_server)
    data = tmp_path / "in.jsonl"
    data.write_text('{"text": "fine"}\n{broken\n{"text": ""}\n')
    result = invoke(
        capsys, monkeypatch, "run", str(CHAIN), "--inputs", str(data), "--output", str(tmp_path / "o.jsonl")
    )
    run_id = SUMMARY.search(result.err)["run"]
    rows = invoke(capsys, monkeypatch, "show", run_id, "--format", "csv").out.splitlines()
    assert rows[0] == "record_key,status,cost_usd,error_kind,error_step,error_message,output"
    by_key = {row.split(",")[0]: row for row in rows[1:]}
    assert set(by_key) == {"1", "2", "3"}
    assert by_key["2"].startswith("2,failed,0.0,invalid_input,input,line 2 is not valid JSON")
    assert ",invalid_input,input," in by_key["3"]
    detail = json.loads(invoke(capsys, monkeypatch, "show", run_id, "--format", "json").out)
    assert sorted(record["record_key"] for record in detail["records"]) == ["1", "2", "3"]
    table = invoke(capsys, monkeypatch, "show", run_id).out
    assert "invalid_input" in table and "not valid JSON" in table and "summarize" in table


def test_resume_of_a_finished_run(capsys, monkeypatch, tmp_path, fake_server):
    go_live(monkeypatch, fake_server)
    data = write_records(tmp_path / "in.jsonl", 3)
    done = invoke(capsys, monkeypatch, "run", str(CHAIN), "--inputs", data, "--output", str(tmp_path / "a.jsonl"))
    run_id = SUMMARY.search(done.err)["run"]
    requests = fake_server.fake.chat_requests
    again = tmp_path / "again.jsonl"
    nothing = invoke(
        capsys, monkeypatch, "run", str(CHAIN), "--inputs", data, "--resume", run_id, "--output", str(again)
    )
    assert nothing.code == 0 and "re-emitted without calls" in nothing.err
    assert fake_server.fake.chat_requests == requests
    assert [json.loads(line)["status"] for line in again.read_text().splitlines()] == ["ok"] * 3

    fake_server.fake.enqueue(Fault("status", status=400, message="bad parameter"))
    failing = invoke(capsys, monkeypatch, "run", str(CHAIN), "--inputs", data, "--no-cache", "--output",
                     str(tmp_path / "b.jsonl"))  # fmt: skip
    assert failing.code == 1
    run_id = SUMMARY.search(failing.err)["run"]
    refused = invoke(capsys, monkeypatch, "run", str(CHAIN), "--inputs", data, "--resume", run_id)
    assert refused.code == 2 and "1 failed record(s)" in refused.err and "--retry-failed" in refused.err
    out = tmp_path / "c.jsonl"
    retried = invoke(capsys, monkeypatch, "run", str(CHAIN), "--inputs", data, "--resume", run_id, "--retry-failed",
                     "--output", str(out))  # fmt: skip
    assert retried.code == 0, retried.err
    assert "1 failed record(s) run again" in retried.err
    assert [json.loads(line)["status"] for line in out.read_text().splitlines()] == ["ok"] * 3
    # A 400 may come from what an earlier step wrote: the record asks everything afresh, not replayed.
    assert "records: 3 ok" in retried.err and "3 billed, 0 from cache" in retried.err
    assert runs_json(capsys, monkeypatch)[run_id]["status"] == "ok"
    alone = invoke(capsys, monkeypatch, "run", str(CHAIN), "--inputs", data, "--retry-failed")
    assert alone.code == 2 and "goes with --resume" in alone.err


def test_resume_of_a_stopped_run_keeps_failed_records_unless_asked(capsys, monkeypatch, tmp_path, fake_server):
    go_live(monkeypatch, fake_server)
    data = write_records(tmp_path / "in.jsonl", 6)
    fake_server.fake.enqueue(Fault("status", status=400, message="bad parameter"))
    fake_server.fake.enqueue(Fault("status", status=402))
    paused = invoke(capsys, monkeypatch, "run", str(CHAIN), "--inputs", data, "--concurrency", "1", "--output",
                    str(tmp_path / "a.jsonl"))  # fmt: skip
    assert paused.code == 3
    run_id = SUMMARY.search(paused.err)["run"]
    out = tmp_path / "b.jsonl"
    resumed = invoke(capsys, monkeypatch, "run", str(CHAIN), "--inputs", data, "--resume", run_id, "--output", str(out))
    assert "its 1 failed record(s) stay failed (--retry-failed runs them again)" in resumed.err
    assert resumed.code == 1
    statuses = sorted(json.loads(line)["status"] for line in out.read_text().splitlines())
    assert statuses == ["failed"] + ["ok"] * 5


def test_bad_report_options_exit_2(capsys, monkeypatch):
    assert invoke(capsys, monkeypatch, "run", TRIAGE, "--mock", "--input", "ticket=hi").code == 0
    for limit in ("0", "-1"):
        result = invoke(capsys, monkeypatch, "runs", "--limit", limit)
        assert result.code == 2 and "--limit" in result.err
    unknown = invoke(capsys, monkeypatch, "costs", "--run", "run-nope")
    assert unknown.code == 2 and "--run run-nope: no such run" in unknown.err


def test_no_cache_still_fills_the_cache(capsys, monkeypatch, tmp_path, fake_server):
    go_live(monkeypatch, fake_server)
    data = write_records(tmp_path / "in.jsonl", 2)
    first = invoke(capsys, monkeypatch, "run", str(CHAIN), "--inputs", data, "--no-cache")
    assert first.code == 0 and "6 billed, 0 from cache" in first.err
    billed = fake_server.fake.billed_calls
    second = invoke(capsys, monkeypatch, "run", str(CHAIN), "--inputs", data)
    assert second.code == 0 and "0 billed, 6 from cache" in second.err
    assert fake_server.fake.billed_calls == billed
