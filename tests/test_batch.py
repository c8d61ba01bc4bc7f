"""Datasets: streaming input and output, concurrency, the response cache, budgets, resume."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from runner.api import load_pipeline
from runner.chat.request import encode_body
from runner.fake import Fault
from runner.fake.server import mock_transport
from runner.run.inputs import InputItem
from runner.settings import RunOptions

from .conftest import ROOT, TEST_KEY, cost_rows, invoke

CHAIN = ROOT / "bench" / "pipelines" / "chain3.yaml"


def write_jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return str(path)


def records(count: int) -> list[dict]:
    return [
        {"id": f"r{index:03d}", "text": f"Message {index}: my invoice is wrong and the app crashes"}
        for index in range(count)
    ]


def lines(path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


@pytest.fixture
def live(monkeypatch, fake_server):
    """The CLI talks to the fake on 127.0.0.1 as it would to OpenRouter."""
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    return fake_server.fake


def run_batch(capsys, monkeypatch, data, *extra):
    return invoke(capsys, monkeypatch, "run", str(CHAIN), "--inputs", data, *extra)


def test_invalid_records_fail_alone_and_the_rest_go_on(capsys, monkeypatch, tmp_path, live):
    data = tmp_path / "in.jsonl"
    data.write_text(
        json.dumps({"text": "fine"})
        + "\n"
        + "{broken\n"
        + "[1, 2]\n"
        + json.dumps({"text": ""})
        + "\n\n"
        + json.dumps({"text": "also fine"})
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    result = run_batch(capsys, monkeypatch, str(data), "--output", str(out))
    assert result.code == 1
    by_key = {line["key"]: line for line in lines(out)}
    assert set(by_key) == {1, 2, 3, 4, 6}
    assert by_key[1]["status"] == by_key[6]["status"] == "ok"
    assert by_key[2]["error"]["kind"] == "invalid_input" and "not valid JSON" in by_key[2]["error"]["message"]
    assert "not an object" in by_key[3]["error"]["message"]
    assert "should be non-empty" in by_key[4]["error"]["message"]
    assert len(live.chat_bodies()) == 6  # three steps for each of the two valid records


def test_key_field_and_csv_with_typed_cells(capsys, monkeypatch, tmp_path, live):
    pipeline = tmp_path / "typed.yaml"
    pipeline.write_text(
        "name: typed\ninput:\n  type: object\n  required: [id, text, priority]\n  properties:\n"
        "    id: {type: string}\n    text: {type: string}\n    priority: {type: integer}\n    urgent: {type: boolean}\n"
        "defaults: {model: google/gemini-2.5-flash-lite}\nsteps:\n  echo:\n    prompt: '{{ input.text }} {{ input.priority + 1 }}'\n"
        "output: '{{ input.priority }}'\n"
    )
    data = tmp_path / "in.csv"
    data.write_text("id,text,priority,urgent\na1,hello,3,true\na2,world,x,false\n,nokey,1,\n")
    out = tmp_path / "out.jsonl"
    result = invoke(
        capsys, monkeypatch, "run", str(pipeline), "--inputs", str(data), "--key-field", "id", "--output", str(out)
    )
    assert result.code == 1
    by_key = {line["key"]: line for line in lines(out)}
    assert by_key["a1"] == {"key": "a1", "status": "ok", "output": 3}
    assert 'priority: must be an integer, not string "x"' in by_key["a2"]["error"]["message"]
    assert "no usable --key-field 'id'" in by_key["line 4"]["error"]["message"]


def test_stdin_is_read_as_json_lines(capsys, monkeypatch, tmp_path, live):
    stdin = "".join(json.dumps(record) + "\n" for record in records(3))
    result = invoke(capsys, monkeypatch, "run", str(CHAIN), "--inputs", "-", stdin=stdin)
    assert result.code == 0, result.err
    assert sorted(json.loads(line)["key"] for line in result.out.splitlines()) == [1, 2, 3]


def test_ordered_output_follows_input_order(capsys, monkeypatch, tmp_path, live):
    live.latency_s = 0.01
    data = write_jsonl(tmp_path / "in.jsonl", records(12))
    live.enqueue(Fault("hang", delay_s=0.4))  # the first request (record 1) is slow
    unordered = tmp_path / "unordered.jsonl"
    assert (
        run_batch(capsys, monkeypatch, data, "--output", str(unordered), "--concurrency", "4", "--no-cache").code == 0
    )
    assert [line["key"] for line in lines(unordered)][-1] == 1
    live.enqueue(Fault("hang", delay_s=0.4))
    ordered = tmp_path / "ordered.jsonl"
    assert (
        run_batch(
            capsys, monkeypatch, data, "--output", str(ordered), "--concurrency", "4", "--ordered", "--no-cache"
        ).code
        == 0
    )
    assert [line["key"] for line in lines(ordered)] == list(range(1, 13))
    assert sorted(map(json.dumps, lines(ordered))) == sorted(map(json.dumps, lines(unordered)))


def test_concurrency_caps_requests_in_flight(capsys, monkeypatch, tmp_path, live):
    live.latency_s = 0.03
    data = write_jsonl(tmp_path / "in.jsonl", records(20))
    assert run_batch(capsys, monkeypatch, data, "--concurrency", "3").code == 0
    assert live.max_in_flight == 3


def test_rerun_pays_nothing_and_records_cache_hits(capsys, monkeypatch, tmp_path, live, db_path):
    data = write_jsonl(tmp_path / "in.jsonl", records(5))
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    assert run_batch(capsys, monkeypatch, data, "--output", str(first), "--ordered").code == 0
    billed = live.billed_calls
    result = run_batch(capsys, monkeypatch, data, "--output", str(second), "--ordered")
    assert result.code == 0 and "0 billed, 15 from cache" in result.err
    assert live.billed_calls == billed
    assert lines(first) == lines(second)
    rows = cost_rows(db_path)
    paid = {row["id"] for row in rows if not row["cached"]}
    hits = [row for row in rows if row["cached"]]
    assert len(paid) == 15 and len(hits) == 15
    assert all(row["cost_usd"] == 0 and row["id"].startswith("cached-") for row in hits)
    assert {row["id"].split("-", 2)[2] for row in hits} == paid  # each hit names the reply it reused


def test_the_cache_ignores_the_user_but_not_the_prompt(capsys, monkeypatch, tmp_path, live):
    data = write_jsonl(tmp_path / "in.jsonl", records(2))
    assert run_batch(capsys, monkeypatch, data, "--user", "alice").code == 0
    billed = live.billed_calls
    assert "0 billed" in run_batch(capsys, monkeypatch, data, "--user", "bob").err
    assert live.billed_calls == billed
    assert "6 billed" in run_batch(capsys, monkeypatch, data, "--no-cache").err


def test_editing_one_prompt_reruns_that_step_and_its_dependents_only(capsys, monkeypatch, tmp_path, live, db_path):
    data = write_jsonl(tmp_path / "in.jsonl", records(4))
    original = CHAIN.read_text()
    pipeline = tmp_path / "chain.yaml"
    pipeline.write_text(original)
    assert invoke(capsys, monkeypatch, "run", str(pipeline), "--inputs", data).code == 0
    pipeline.write_text(original.replace("List the entities in:", "List every named entity in:"))
    assert invoke(capsys, monkeypatch, "run", str(pipeline), "--inputs", data).code == 0
    with sqlite3.connect(db_path) as db:
        last_run = db.execute("SELECT id FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()[0]
        paid = dict(
            db.execute("SELECT step, SUM(1 - cached) FROM cost_records WHERE run_id = ? GROUP BY step", (last_run,))
        )
    assert paid == {"classify": 0, "extract": 4, "summarize": 4}


def test_budget_is_never_overshot_under_concurrency_and_resume_finishes(capsys, monkeypatch, tmp_path, live, db_path):
    data = write_jsonl(tmp_path / "in.jsonl", records(40))
    live.latency_s = 0.01
    cap = 0.0005
    out = tmp_path / "out.jsonl"
    stopped = run_batch(capsys, monkeypatch, data, "--concurrency", "16", "--max-cost", str(cap), "--output", str(out))
    assert stopped.code == 3
    assert "--max-cost $0.0005 reached" in stopped.err and "--resume run-" in stopped.err
    run_id = stopped.err.split("--resume ")[1].split()[0]
    spent = sum(row["cost_usd"] for row in cost_rows(db_path))
    assert 0 < spent <= cap
    assert live.total_cost == pytest.approx(spent)  # nothing was billed that is not in the ledger
    kept = lines(out)
    assert 0 < len(kept) < 40 and all(line["status"] == "ok" for line in kept)

    resumed = run_batch(
        capsys, monkeypatch, data, "--max-cost", "1", "--resume", run_id, "--output", str(out), "--ordered"
    )
    assert resumed.code == 0, resumed.err
    assert [line["key"] for line in lines(out)] == list(range(1, 41))
    bodies = [encode_body(body)[0] for body in live.chat_bodies()]
    assert live.billed_calls == len(set(bodies)) == 120  # no request was paid for twice


def test_out_of_credits_pauses_the_run_and_resume_finishes_it(capsys, monkeypatch, tmp_path, live):
    data = write_jsonl(tmp_path / "in.jsonl", records(10))
    live.latency_s = 0.005
    live.enqueue(Fault("status", status=402, times=1))
    out = tmp_path / "out.jsonl"
    paused = run_batch(capsys, monkeypatch, data, "--concurrency", "2", "--output", str(out))
    assert paused.code == 3 and "insufficient credits" in paused.err
    run_id = paused.err.split("--resume ")[1].split()[0]
    assert len(lines(out)) < 10 and all(line["status"] == "ok" for line in lines(out))
    resumed = run_batch(capsys, monkeypatch, data, "--resume", run_id, "--output", str(out))
    assert resumed.code == 0
    assert sorted(line["key"] for line in lines(out)) == list(range(1, 11))


def test_resume_refuses_an_unknown_run(capsys, monkeypatch, tmp_path, live):
    data = write_jsonl(tmp_path / "in.jsonl", records(1))
    result = run_batch(capsys, monkeypatch, data, "--resume", "run-nope")
    assert result.code == 2 and "no such run" in result.err


def test_dry_run_estimates_without_calling(capsys, monkeypatch, tmp_path, live):
    data = write_jsonl(
        tmp_path / "in.jsonl", [{"ticket": "My invoice is wrong"}, {"ticket": "spam spam"}, {"ticket": ""}]
    )
    result = invoke(
        capsys, monkeypatch, "run", str(ROOT / "pipelines" / "ticket_triage.yaml"), "--inputs", data, "--dry-run"
    )
    assert result.code == 0, result.err
    assert live.chat_requests == 0
    assert "classify  google/gemini-2.5-flash-lite" in result.out
    assert "reply     anthropic/claude-sonnet-4.5" in result.out  # behind a `when`: counted as possible
    assert "2 record(s), 6 possible call(s): estimated $" in result.out
    assert "1 record(s) do not match the input schema" in result.err


def test_dry_run_works_offline_without_a_key(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("OPENROUTER_BASE_URL", "http://127.0.0.1:9/api/v1")  # nothing listens there
    result = invoke(capsys, monkeypatch, "run", str(CHAIN), "--input", "text=hello", "--dry-run")
    assert result.code == 0, result.err
    assert "1 record(s), 3 possible call(s)" in result.out  # priced from the bundled catalogue


def test_run_many_is_an_async_iterator(fake, settings):
    pipeline = load_pipeline(CHAIN)

    async def collect():
        seen = []
        async for result in pipeline.run_many(
            ({"text": f"message {index}"} for index in range(7)),
            concurrency=3,
            settings=settings,
            transport=mock_transport(fake),
        ):
            seen.append(result)
        return seen

    results = asyncio.run(collect())
    assert sorted(result.key for result in results) == list(range(1, 8))
    assert all(result.status == "ok" for result in results)
    assert fake.max_in_flight <= 3


def test_session_keeps_input_item_keys(fake, settings):
    pipeline = load_pipeline(CHAIN)

    async def collect():
        async with pipeline.session(
            settings, transport=mock_transport(fake), options=RunOptions(concurrency=2)
        ) as session:
            return [
                result
                async for result in session.run_many(
                    [InputItem("a", {"text": "x"}), InputItem("b", {"text": "y"})], ordered=True
                )
            ]

    assert [result.key for result in asyncio.run(collect())] == ["a", "b"]


def test_killed_run_resumes_without_paying_twice(tmp_path, fake_server):
    """A real process, SIGKILLed mid-run, then resumed: same output, each request paid once."""
    fake = fake_server.fake
    fake.latency_s = 0.01
    data = write_jsonl(tmp_path / "in.jsonl", records(60))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OPENROUTER", "PIPELINE"))}
    env.update(
        OPENROUTER_API_KEY=TEST_KEY, OPENROUTER_BASE_URL=fake_server.base_url, PIPELINE_DB=str(tmp_path / "kill.db")
    )
    out = tmp_path / "out.jsonl"
    command = [
        sys.executable,
        "-m",
        "runner",
        "run",
        str(CHAIN),
        "--inputs",
        data,
        "--concurrency",
        "4",
        "--output",
        str(out),
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while fake.billed_calls < 60 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    assert process.returncode == -signal.SIGKILL
    with sqlite3.connect(tmp_path / "kill.db") as db:
        run_id = db.execute("SELECT id FROM runs").fetchone()[0]

    resumed = subprocess.run(
        [*command, "--ordered", "--resume", run_id], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr
    distinct = {encode_body(body)[0] for body in fake.chat_bodies()}
    assert len(distinct) == 180
    assert fake.billed_calls - len(distinct) <= 4  # at most the requests in flight (--concurrency 4)
    paid = [row for row in cost_rows(tmp_path / "kill.db") if not row["cached"]]
    assert len(paid) == len({(row["record_key"], row["step"]) for row in paid}) == 180

    env["PIPELINE_DB"] = str(tmp_path / "clean.db")
    clean = tmp_path / "clean.jsonl"
    straight = [*command[: command.index("--concurrency")], "--output", str(clean), "--ordered"]
    assert subprocess.run(straight, cwd=ROOT, env=env, capture_output=True, timeout=120).returncode == 0
    assert lines(out) == lines(clean)


BAD_RECORDS = {
    "jsonl-lone-surrogate": ("in.jsonl", b'{"text": "one"}\n{"text": "\\ud800 alone"}\n{"text": "three"}\n', 2),
    "jsonl-latin-1-byte": ("in.jsonl", b'{"text": "one"}\n{"text": "caf\xe9"}\n{"text": "three"}\n', 2),
    "jsonl-nan": ("in.jsonl", b'{"text": "one"}\n{"text": "x", "score": NaN}\n{"text": "three"}\n', 2),
    "csv-short-row": ("in.csv", b"text,note\none,a\ntwo\nthree,c\n", 3),
    "csv-long-row": ("in.csv", b"text,note\none,a\ntwo,b,surplus\nthree,c\n", 3),
    "csv-latin-1-byte": ("in.csv", b"text,note\none,a\ncaf\xe9,b\nthree,c\n", 3),
    "csv-huge-cell": ("in.csv", b"text,note\none,a\ntwo," + b"n" * (128 * 1024 + 1) + b"\nthree,c\n", 3),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_one_bad_record_fails_alone_and_resume_survives_it(capsys, monkeypatch, tmp_path, live, db_path, case):
    name, data, bad_line = BAD_RECORDS[case]
    (tmp_path / name).write_bytes(data)
    out = tmp_path / "out.jsonl"
    first = run_batch(capsys, monkeypatch, str(tmp_path / name), "--output", str(out))
    assert first.code == 1, first.err
    assert "Traceback" not in first.err
    by_key = {line["key"]: line for line in lines(out)}
    assert len(by_key) == 3 and [key for key in by_key if by_key[key]["status"] == "ok"] != []
    bad = by_key.pop(bad_line)
    assert bad["status"] == "failed" and bad["error"]["kind"] == "invalid_input"
    assert f"line {bad_line}" in bad["error"]["message"]
    assert all(line["status"] == "ok" for line in by_key.values())
    run_id = first.err.split("run ", 1)[1].split(":", 1)[0]

    resumed = run_batch(
        capsys, monkeypatch, str(tmp_path / name), "--output", str(out), "--resume", run_id, "--retry-failed"
    )
    assert resumed.code == 1, resumed.err
    assert "Traceback" not in resumed.err
    assert {line["key"]: line["status"] for line in lines(out)} == {
        **{key: "ok" for key in by_key},
        bad_line: "failed",
    }


def test_an_excel_csv_with_a_byte_order_mark_keys_by_its_first_column(capsys, monkeypatch, tmp_path, live):
    data = tmp_path / "excel.csv"
    data.write_bytes("\ufeffid,text\r\nt1,My invoice is wrong\r\nt2,The app crashes\r\n".encode())
    out = tmp_path / "out.jsonl"
    result = run_batch(capsys, monkeypatch, str(data), "--key-field", "id", "--output", str(out))
    assert result.code == 0, result.err
    assert sorted(line["key"] for line in lines(out)) == ["t1", "t2"]


def stored_records(db_path) -> dict[str, str]:
    with sqlite3.connect(db_path) as db:
        return dict(db.execute("SELECT record_key, status FROM records"))


def test_duplicate_keys_fail_and_the_database_agrees_with_the_output(capsys, monkeypatch, tmp_path, live, db_path):
    data = write_jsonl(
        tmp_path / "in.jsonl",
        [
            {"id": "a", "text": "first a"},
            {"id": "b", "text": "only b"},
            {"id": "a", "text": "second a"},
            {"text": "no id at all"},
            {"id": 4, "text": "keyed 4, as the line before it would be by line number"},
        ],
    )
    out = tmp_path / "out.jsonl"
    result = run_batch(capsys, monkeypatch, data, "--key-field", "id", "--output", str(out))
    assert result.code == 1
    written = {str(line["key"]): line["status"] for line in lines(out)}
    assert written == {"a": "ok", "b": "ok", "line 3": "failed", "line 4": "failed", "4": "ok"}
    assert stored_records(db_path) == written
    duplicate = next(line for line in lines(out) if line["key"] == "line 3")
    assert "duplicate key 'a' (first on line 1)" in duplicate["error"]["message"]
    with sqlite3.connect(db_path) as db:
        counts = db.execute("SELECT records_ok, records_failed FROM runs").fetchone()
    assert counts == (3, 2)
    assert "3 ok, 2 failed" in result.err
    assert "--key-field id: line 3: duplicate key 'a' (first on line 1)" in result.err  # said where the user looks
    assert not any("second a" in json.dumps(body) for body in live.chat_bodies())


def test_resume_runs_an_edited_record_again_instead_of_serving_its_old_answer(
    capsys, monkeypatch, tmp_path, live, db_path
):
    path = tmp_path / "in.jsonl"
    data = write_jsonl(path, records(3))
    out = tmp_path / "out.jsonl"
    first = run_batch(capsys, monkeypatch, data, "--output", str(out), "--ordered")
    assert first.code == 0, first.err
    run_id = first.err.split("run ", 1)[1].split(":", 1)[0]
    old = lines(out)

    edited = records(3)
    edited[1]["text"] = "A different message: please cancel my subscription"
    write_jsonl(path, edited)
    resumed = run_batch(capsys, monkeypatch, data, "--output", str(out), "--ordered", "--resume", run_id)
    assert resumed.code == 0, resumed.err
    assert "record 2 changed since run" in resumed.err
    new = lines(out)
    assert new[0] == old[0] and new[2] == old[2]
    assert any("cancel my subscription" in json.dumps(body) for body in live.chat_bodies())

    monkeypatch.setenv("PIPELINE_DB", str(tmp_path / "fresh.db"))
    fresh = tmp_path / "fresh.jsonl"
    assert run_batch(capsys, monkeypatch, data, "--output", str(fresh), "--ordered").code == 0
    assert new == lines(fresh)  # the edited record got the answer its new content gets


def test_record_fingerprints_are_stored_on_both_backends(backend):
    from types import MappingProxyType

    from runner.run.results import RecordResult
    from runner.store import Store

    target, schema = backend
    with Store(target, schema=schema) as store:
        store.start_run("run-f", "p", "p.yaml", None)
        store.add_record(RecordResult("k1", "ok", {"a": 1}, MappingProxyType({}), run_id="run-f"), "f" * 64)
        assert store.finished_record("run-f", "k1")["fingerprint"] == "f" * 64
