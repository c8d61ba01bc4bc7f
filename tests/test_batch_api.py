"""`pipeline run --batch-api` (DESIGN.md §9) against the fake OpenRouter's Batch API: batching inside
the DAG, polling, the failure taxonomy per result, cost truth, crash safety and where batches cannot go."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner import load_pipeline
from runner.chat.batches import BatchClient, BatchState, submission
from runner.chat.catalog import EMPTY_CATALOG
from runner.chat.client import OpenRouterClient
from runner.chat.request import encode_body
from runner.fake import FakeOpenRouter, Fault
from runner.report.progress import RunProgress
from runner.run.batch_values import text_only
from runner.run.batching import BatchCollector
from runner.settings import RunOptions, Settings
from runner.store import Store
from tests.conftest import ROOT, TEST_KEY, cost_rows, invoke, write_pipeline

CHAIN = ROOT / "bench" / "pipelines" / "chain3.yaml"
FAST = ("--batch-api", "--batch-linger", "0.05", "--batch-poll", "0.02")
HEADERS = {"Authorization": f"Bearer {TEST_KEY}"}


def write_jsonl(path: Path, count: int) -> str:
    path.write_text(
        "".join(json.dumps({"text": f"Message {index}: my invoice is wrong"}) + "\n" for index in range(count)),
        encoding="utf-8",
    )
    return str(path)


def output_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def batches_of(db_path: Path) -> list[dict]:
    with sqlite3.connect(db_path) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM batches ORDER BY created_at, number")]


def chat_posts(fake: FakeOpenRouter) -> int:
    return sum(1 for seen in fake.history if seen.path == "chat/completions")


@pytest.fixture
def live(monkeypatch, fake_server):
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    fake_server.fake.batches.delay_s = 0.05
    return fake_server.fake


def run(capsys, monkeypatch, tmp_path, count, *extra, pipeline=CHAIN):
    out = tmp_path / "out.jsonl"
    data = write_jsonl(tmp_path / "in.jsonl", count)
    outcome = invoke(capsys, monkeypatch, "run", str(pipeline), "--inputs", data, "--output", str(out), *extra)
    return outcome, output_lines(out) if out.exists() else []


# --- the fake's Batch API -------------------------------------------------------------------------


def fake_call(fake: FakeOpenRouter, method: str, path: str, raw: bytes = b""):
    response = asyncio.run(fake.handle(method, f"/api/v1/{path}", {}, HEADERS, raw))
    return response.status, response.body


def chat_body(text: str, response_format=None) -> bytes:
    body = {"model": "google/gemini-2.5-flash-lite", "messages": [{"role": "user", "content": text}], "max_tokens": 50}
    if response_format is not None:
        body["response_format"] = response_format
    return encode_body(body)[1]


def finished(fake: FakeOpenRouter, batch_id: str) -> dict:
    fake.batches.delay_s = 0
    status, body = fake_call(fake, "GET", f"batches/{batch_id}")
    assert status == 200
    return body


def test_the_fake_refuses_requests_before_model_and_duplicate_custom_ids():
    fake = FakeOpenRouter()
    late = b'{"requests":[{"custom_id":"a","body":{"messages":[]}}],"endpoint":"/v1/chat/completions","model":"x"}'
    status, body = fake_call(fake, "POST", "batches", late)
    assert status == 400 and "before `requests`" in body["error"]["message"]
    twice = submission("google/gemini-2.5-flash-lite", [("same", chat_body("a")), ("same", chat_body("b"))])
    status, body = fake_call(fake, "POST", "batches", twice)
    assert status == 400 and "duplicate custom_id" in body["error"]["message"]
    assert fake.batches.submitted_requests == 0


def test_the_fake_fails_a_google_batch_that_mixes_response_formats():
    fake = FakeOpenRouter()
    mixed = submission(
        "google/gemini-2.5-flash-lite",
        [("plain", chat_body("a")), ("json", chat_body("b", {"type": "json_object"}))],
    )
    status, body = fake_call(fake, "POST", "batches", mixed)
    assert status == 202 and body["status"] == "validating"
    state = finished(fake, body["id"])
    assert state["status"] == "failed" and state["results"] is None
    assert "'json'" in state["error"]["message"] and "response_format" in state["error"]["message"]


def test_the_fake_answers_out_of_order_at_half_price_and_can_omit_usage():
    fake = FakeOpenRouter()
    items = [(f"r{index}", chat_body(f"question {index}")) for index in range(6)]
    assert asyncio.run(fake.handle("POST", "/api/v1/chat/completions", {}, HEADERS, items[0][1])).status == 200
    sync_cost = fake.total_cost
    _, body = fake_call(fake, "POST", "batches", submission("google/gemini-2.5-flash-lite", items))
    state = BatchState.from_body(finished(fake, body["id"]))
    assert state.status == "completed" and state.completed == 6
    assert [result.custom_id for result in state.results] != [custom for custom, _ in items]
    first = next(result for result in state.results if result.custom_id == "r0")
    assert first.body["id"].startswith("gen-batch-")
    assert first.body["usage"]["cost"] == pytest.approx(sync_cost / 2)
    assert state.usage.cost_usd == pytest.approx(sum(result.body["usage"]["cost"] for result in state.results))

    fake.batches.omit_usage = True
    _status, body = fake_call(fake, "POST", "batches", submission("google/gemini-2.5-flash-lite", items[:2]))
    state = BatchState.from_body(finished(fake, body["id"]))
    assert all("usage" not in result.body for result in state.results) and state.usage.cost_usd > 0


def test_submission_sends_endpoint_and_model_before_requests():
    raw = submission("openai/gpt-4o", [("a", b'{"messages":[]}')])
    assert list(json.loads(raw)) == ["endpoint", "model", "requests"]
    assert json.loads(raw)["requests"] == [{"custom_id": "a", "body": {"messages": []}}]


def test_a_batch_is_submitted_when_full_or_after_the_linger_and_progress_counts_it(fake, transport, settings, db_path):
    fake.batches.delay_s = 0
    pipeline = load_pipeline(CHAIN)
    options = RunOptions(batch_api=True, batch_size=3, batch_linger_s=0.05, batch_poll_s=0.01)
    stream = io.StringIO()
    progress = RunProgress(total_records=None, stream=stream, every_s=0)

    async def main():
        async with pipeline.session(settings, transport=transport, options=options, hooks=progress) as session:
            progress.watch_batches(session.batches)
            results = [result async for result in session.run_many({"text": f"text {i}"} for i in range(7))]
            return results, session.batches.counts()

    results, counts = asyncio.run(main())
    assert {result.status for result in results} == {"ok"}
    sizes = [batch["requests"] for batch in batches_of(db_path) if batch["step"] == "classify"]
    assert sorted(sizes) == [1, 3, 3]  # two full batches at once, the last one after the linger
    submitted = len(batches_of(db_path))
    assert (counts.submitted, counts.running, counts.done, counts.requests_done) == (submitted, 0, submitted, 21)
    assert f"batches: {submitted} submitted, 0 running, {submitted} done" in stream.getvalue()


def test_two_requests_under_one_custom_id_still_make_a_valid_batch(fake, transport):
    """A `for_each` element the caller did not name must not make OpenRouter refuse the whole batch."""
    fake.batches.delay_s = 0
    step = load_pipeline(CHAIN).spec.steps[0]
    body = {"model": step.model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 50}
    key, content = encode_body(body)

    async def main():
        async with OpenRouterClient(
            api_key=TEST_KEY, base_url="https://openrouter.test/api/v1", transport=transport
        ) as client:
            batches = BatchClient(client, "https://openrouter.test/api/v1/batches")
            collector = BatchCollector(batches, run_id="run-x", catalog=EMPTY_CATALOG, lookup=client, linger_s=0.01,
                                       poll_s=0.01)  # fmt: skip
            same = {"content": content, "body_key": key, "record_key": "1", "attempt": 1}
            return await asyncio.gather(*(collector.send(step, step.model, body, **same) for _ in range(2)))

    first, second = asyncio.run(main())
    assert first.batch_id == second.batch_id and first.reply.generation_id != second.reply.generation_id
    (batch,) = fake.batches.batches.values()
    assert sorted(item["custom_id"] for item in batch.requests) == ["run-x:1:classify:-:1", "run-x:1:classify:-:1.d1"]


def test_only_text_requests_are_batched():
    text = {
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": [{"type": "text", "text": "t"}]}]
    }
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}
    assert text_only(text)
    assert not text_only({"messages": [*text["messages"], image]})


# --- end to end -----------------------------------------------------------------------------------


def test_a_thousand_records_through_three_steps_pay_half_and_record_exactly_what_was_billed(
    capsys, monkeypatch, tmp_path, live, db_path
):
    outcome, lines = run(capsys, monkeypatch, tmp_path, 1000, *FAST)
    assert outcome.code == 0, outcome.err
    assert len(lines) == 1000 and {line["status"] for line in lines} == {"ok"}
    assert chat_posts(live) == 0  # every step is batchable: nothing went to /chat/completions
    batches = batches_of(db_path)
    assert {batch["step"] for batch in batches} == {"classify", "extract", "summarize"}
    assert sum(batch["requests"] for batch in batches) == 3000 and len(batches) == 3  # one batch per step
    rows = cost_rows(db_path)
    assert len(rows) == 3000 and {row["cost_source"] for row in rows} == {"batch"}
    assert {row["batch_id"] for row in rows} == {batch["batch_id"] for batch in batches}
    assert abs(sum(row["cost_usd"] for row in rows) - live.batches.billed_total) < 1e-9
    for batch in batches:  # each batch's rows add up to its bill
        mine = [row["cost_usd"] for row in rows if row["batch_id"] == batch["batch_id"]]
        assert abs(sum(mine) - batch["billed_usd"]) < 1e-9
    with sqlite3.connect(db_path) as db:
        custom = db.execute("SELECT custom_id FROM batch_requests WHERE record_key = '7'").fetchall()
        run_id = db.execute("SELECT id FROM runs").fetchone()[0]
    assert sorted(row[0] for row in custom) == [
        f"{run_id}:7:{step}:-:1" for step in ("classify", "extract", "summarize")
    ]

    batch_cost = sum(row["cost_usd"] for row in rows)
    sync_db = tmp_path / "sync.db"
    outcome, _ = run(capsys, monkeypatch, tmp_path, 1000, "--db", str(sync_db))
    assert outcome.code == 0
    sync_cost = sum(row["cost_usd"] for row in cost_rows(sync_db))
    assert batch_cost == pytest.approx(sync_cost / 2, rel=1e-6)

    listed = invoke(capsys, monkeypatch, "runs", "--format", "json")
    shown = {row["id"]: row for row in json.loads(listed.out)}
    assert shown[run_id]["normal_api_usd"] == pytest.approx(sync_cost, rel=1e-6)


def test_retryable_results_go_into_a_later_batch_and_bad_json_is_re_asked_there(
    capsys, monkeypatch, tmp_path, live, db_path
):
    live.enqueue(Fault("upstream_error", status=429, times=2))
    live.enqueue(Fault("content", content="this is not JSON"))
    outcome, lines = run(capsys, monkeypatch, tmp_path, 5, *FAST)
    assert outcome.code == 0, outcome.err
    assert {line["status"] for line in lines} == {"ok"}
    assert chat_posts(live) == 0
    classify = [batch for batch in batches_of(db_path) if batch["step"] == "classify"]
    assert [batch["requests"] for batch in classify] == [5, 3]  # two retried, one re-asked: a second batch
    with sqlite3.connect(db_path) as db:
        retried = [row[0] for row in db.execute("SELECT custom_id FROM batch_requests WHERE custom_id LIKE '%.r1'")]
        reasked = [row[0] for row in db.execute("SELECT custom_id FROM batch_requests WHERE custom_id LIKE '%:2'")]
    assert len(retried) == 2 and len(reasked) == 1
    outcomes = sorted(row["outcome"] for row in cost_rows(db_path) if row["step"] == "classify")
    assert outcomes.count("invalid_json") == 1 and outcomes.count("ok") == 5


def test_a_401_inside_the_results_stops_the_run(capsys, monkeypatch, tmp_path, live):
    live.enqueue(Fault("status", status=401, message="User not found."))
    outcome, _ = run(capsys, monkeypatch, tmp_path, 3, *FAST)
    assert outcome.code == 3
    assert "401" in outcome.err and "batch_" in outcome.err


def test_expired_and_failed_batches_are_submitted_again_and_the_message_names_them(
    capsys, monkeypatch, tmp_path, live, db_path
):
    live.batches.fail_next("expired", "the 24h window passed")
    live.batches.fail_next("failed", "the batch service is down")
    outcome, lines = run(capsys, monkeypatch, tmp_path, 4, *FAST)
    assert outcome.code == 0, outcome.err
    assert {line["status"] for line in lines} == {"ok"}
    statuses = [batch["status"] for batch in batches_of(db_path)]
    assert statuses.count("expired") == 1 and statuses.count("failed") == 1
    failed = [batch for batch in batches_of(db_path) if batch["status"] in ("expired", "failed")]
    for batch in failed:
        assert f"batch {batch['batch_id']} {batch['status']}: {batch['error_message']}" in outcome.err
    assert not [row for row in cost_rows(db_path) if row["batch_id"] in {batch["batch_id"] for batch in failed}]


def test_when_batches_keep_failing_the_fallback_model_gets_its_own_batch(capsys, monkeypatch, tmp_path, live, db_path):
    pipeline = write_pipeline(
        tmp_path,
        """
name: fallback
defaults: {model: google/gemini-2.5-flash-lite, fallback_models: [openai/gpt-4o-mini], retries: 1, max_tokens: 100}
steps:
  answer: {prompt: "Answer {{ input.text }}"}
output: "{{ steps.answer.output }}"
""",
    )
    live.batches.fail_next("failed", "first")
    live.batches.fail_next("failed", "second")
    outcome, _lines = run(capsys, monkeypatch, tmp_path, 3, *FAST, pipeline=pipeline)
    assert outcome.code == 0, outcome.err
    assert [batch["model"] for batch in batches_of(db_path)] == [
        "google/gemini-2.5-flash-lite",
        "google/gemini-2.5-flash-lite",
        "openai/gpt-4o-mini",
    ]
    assert {row["model"] for row in cost_rows(db_path)} == {"openai/gpt-4o-mini"}


@pytest.mark.parametrize("lookups_fail", [False, True])
def test_results_without_usage_are_priced_by_generation_then_by_the_batch_bill(
    live, fake_server, db_path, lookups_fail
):
    live.batches.omit_usage = True
    live.generation_not_found_lookups = 0
    live.generations_never_found = lookups_fail
    settings = Settings(api_key=TEST_KEY, base_url=fake_server.base_url, db=str(db_path), models_cache=False,
                        generation_wait_s=0.0)  # fmt: skip
    options = RunOptions(batch_api=True, batch_linger_s=0.05, batch_poll_s=0.02)

    async def main():
        async with load_pipeline(CHAIN).session(settings, options=options) as session:
            return [result async for result in session.run_many({"text": f"text {i}"} for i in range(20))]

    assert {result.status for result in asyncio.run(main())} == {"ok"}
    rows = cost_rows(db_path)
    assert len(rows) == 60
    assert {row["cost_source"] for row in rows} == ({"batch"} if lookups_fail else {"generation"})
    assert all(row["cost_usd"] > 0 for row in rows)
    for batch in batches_of(db_path):
        mine = [row["cost_usd"] for row in rows if row["batch_id"] == batch["batch_id"]]
        assert abs(sum(mine) - live.batches.batches[batch["batch_id"]].usage["cost"]) < 1e-9


def test_retry_failed_asks_a_billed_failure_again_in_a_new_batch(capsys, monkeypatch, tmp_path, live, db_path):
    """A resume polls only what was never read: a failure already recorded is asked afresh, not re-read."""
    pipeline = write_pipeline(
        tmp_path,
        """
name: cut
defaults: {model: google/gemini-2.5-flash-lite, max_tokens: 100}
steps:
  answer: {prompt: "Answer {{ input.text }}"}
output: "{{ steps.answer.output }}"
""",
    )
    live.enqueue(Fault("finish", finish_reason="length"))
    outcome, lines = run(capsys, monkeypatch, tmp_path, 3, *FAST, pipeline=pipeline)
    assert outcome.code == 1 and sorted(line["status"] for line in lines) == ["failed", "ok", "ok"]
    run_id = cost_rows(db_path)[0]["run_id"]
    again = invoke(capsys, monkeypatch, "run", str(pipeline), "--inputs", str(tmp_path / "in.jsonl"), *FAST,
                   "--resume", run_id, "--retry-failed")  # fmt: skip
    assert again.code == 0, again.err
    assert live.batches.submitted_requests == 4  # the failed one asked again; nothing else submitted
    assert len([row for row in cost_rows(db_path) if not row["cached"]]) == 4


def test_the_budget_holds_across_batches(capsys, monkeypatch, tmp_path, live, db_path):
    """Each request's worst case is reserved before it joins a batch and settled on its result."""
    pipeline = write_pipeline(
        tmp_path,
        """
name: capped
defaults: {model: google/gemini-2.5-flash-lite, max_tokens: 20, reasoning: {effort: none}}
steps:
  answer: {prompt: "Answer {{ input.text }}"}
output: "{{ steps.answer.output }}"
""",
    )
    cap = 0.0001
    outcome, lines = run(capsys, monkeypatch, tmp_path, 60, *FAST, "--batch-size", "5", "--max-cost", str(cap),
                         pipeline=pipeline)  # fmt: skip
    assert outcome.code == 3 and "--max-cost" in outcome.err
    spent = sum(row["cost_usd"] for row in cost_rows(db_path))
    assert 0 < spent <= cap and live.batches.billed_total <= cap
    assert len(batches_of(db_path)) >= 3 and 10 <= len(lines) < 60


def test_a_step_that_opts_out_uses_the_normal_api(capsys, monkeypatch, tmp_path, live, db_path):
    pipeline = write_pipeline(
        tmp_path,
        """
name: opt-out
defaults: {model: google/gemini-2.5-flash-lite, max_tokens: 100, batch: false}
steps:
  first: {prompt: "First {{ input.text }}", batch: true}
  second: {prompt: "Second {{ steps.first.output }}"}
output: "{{ steps.second.output }}"
""",
    )
    outcome, _lines = run(capsys, monkeypatch, tmp_path, 4, *FAST, pipeline=pipeline)
    assert outcome.code == 0, outcome.err
    assert chat_posts(live) == 4
    by_step = {row["step"]: row for row in cost_rows(db_path)}
    assert by_step["first"]["batch_id"] is not None and by_step["second"]["batch_id"] is None
    shown = invoke(capsys, monkeypatch, "show", by_step["first"]["run_id"])
    assert by_step["first"]["batch_id"] in shown.out and "completed" in shown.out


def test_an_unusable_batch_url_is_a_configuration_stop_that_never_repeats_it(capsys, monkeypatch):
    monkeypatch.setenv("OPENROUTER_BATCH_URL", "https://user:hunter2@example.test/batches")
    outcome = invoke(capsys, monkeypatch, "run", str(CHAIN), "--input", "text=hi", "--mock", *FAST)
    assert outcome.code == 3 and "OPENROUTER_BATCH_URL" in outcome.err and "hunter2" not in outcome.err


def test_one_input_record_with_the_batch_api_warns_and_mock_works(capsys, monkeypatch):
    outcome = invoke(capsys, monkeypatch, "run", str(CHAIN), "--input", "text=hello", "--mock", *FAST)
    assert outcome.code == 0, outcome.err
    assert "may take minutes" in outcome.err or "can take minutes" in outcome.err
    assert "through the normal API" in outcome.err
    assert json.loads(outcome.out)["category"]


@pytest.mark.parametrize("waiting_on", [1, 2])
def test_a_killed_run_resumes_by_polling_its_batches_and_never_submits_them_again(tmp_path, fake_server, waiting_on):
    """Killed while waiting on the first step's batch, or on the second's (the first's replies are on disk)."""
    fake = fake_server.fake
    fake.batches.delay_s = 3.0
    data = write_jsonl(tmp_path / "in.jsonl", 40)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OPENROUTER", "PIPELINE"))}
    env.update(
        OPENROUTER_API_KEY=TEST_KEY,
        OPENROUTER_BASE_URL=fake_server.base_url,
        PIPELINE_DB=str(tmp_path / "kill.db"),
        PIPELINE_CACHE_DIR=str(tmp_path / "cache"),
    )
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "runner", "run", str(CHAIN), "--inputs", data, "--output", str(out), *FAST]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(fake.batches.batches) < waiting_on and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    time.sleep(0.5)  # waiting on the batch (3 s): its id is stored right after the 202
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    assert process.returncode == -signal.SIGKILL
    assert fake.batches.submitted_requests == 40 * waiting_on
    with sqlite3.connect(tmp_path / "kill.db") as db:
        run_id = db.execute("SELECT id FROM runs").fetchone()[0]
        assert db.execute("SELECT COUNT(*) FROM batches WHERE batch_id IS NOT NULL").fetchone()[0] == waiting_on

    fake.batches.delay_s = 0.05
    resumed = subprocess.run(
        [*command, "--resume", run_id], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "polled, not submitted again" in resumed.stderr
    assert fake.batches.submitted_requests == 120  # 40 records x 3 steps, each submitted once
    assert len(output_lines(out)) == 40 and {line["status"] for line in output_lines(out)} == {"ok"}
    rows = [row for row in cost_rows(tmp_path / "kill.db") if not row["cached"]]
    assert len(rows) == len({(row["record_key"], row["step"]) for row in rows}) == 120
    assert len([row for row in cost_rows(tmp_path / "kill.db") if row["cached"]]) == 40 * (waiting_on - 1)
    assert abs(sum(row["cost_usd"] for row in rows) - fake.batches.billed_total) < 1e-9


def test_batches_are_kept_the_same_way_on_both_backends(fake, transport, backend):
    target, schema = backend
    fake.batches.delay_s = 0
    settings = Settings(api_key=TEST_KEY, base_url="https://openrouter.test/api/v1", db=target, db_schema=schema,
                        models_cache=False)  # fmt: skip
    options = RunOptions(batch_api=True, batch_linger_s=0.02, batch_poll_s=0.01)

    async def main():
        async with load_pipeline(CHAIN).session(settings, transport=transport, options=options) as session:
            results = [result async for result in session.run_many({"text": f"text {i}"} for i in range(5))]
            return results, session.run_id

    results, run_id = asyncio.run(main())
    assert {result.status for result in results} == {"ok"}
    with Store(target, schema=schema) as store:
        batches = store.run_batches(run_id)
        rows = store.cost_rows(run_id)
        summary = store.run_summary(run_id)
    assert [(batch["step"], batch["status"], batch["requests"]) for batch in batches] == [
        ("classify", "completed", 5),
        ("extract", "completed", 5),
        ("summarize", "completed", 5),
    ]
    assert abs(sum(row["cost_usd"] for row in rows) - fake.batches.billed_total) < 1e-9
    assert summary["normal_api_usd"] == pytest.approx(2 * summary["cost_usd"], rel=1e-6)


def test_a_for_each_steps_elements_are_named_in_their_custom_ids(capsys, monkeypatch, tmp_path, live):
    pipeline = write_pipeline(
        tmp_path,
        """
name: map-batch
input:
  type: object
  properties: {text: {type: string}}
steps:
  words:
    model: google/gemini-2.5-flash-lite
    for_each: "{{ input.text.split()[:3] }}"
    as: word
    prompt: "Define {{ word }} (element {{ item_index }})."
output:
  words: "{{ steps.words.output }}"
""",
    )
    outcome, lines = run(capsys, monkeypatch, tmp_path, 2, *FAST, pipeline=pipeline)
    assert outcome.code == 0, outcome.err
    assert [len(line["output"]["words"]) for line in lines] == [3, 3]
    assert chat_posts(live) == 0
    ids = sorted(item["custom_id"] for batch in live.batches.batches.values() for item in batch.requests)
    elements = sorted(custom_id.split(":")[3] for custom_id in ids)
    assert elements == ["0", "0", "1", "1", "2", "2"]  # run:record:step:element:attempt


@pytest.mark.parametrize(("flag", "value"), [("--batch-size", "10"), ("--batch-linger", "1"), ("--batch-poll", "2")])
def test_a_batch_option_without_batch_api_is_refused_not_ignored(capsys, monkeypatch, tmp_path, live, flag, value):
    outcome, lines = run(capsys, monkeypatch, tmp_path, 2, flag, value)
    assert outcome.code == 2, outcome.err
    assert f"{flag} goes with --batch-api" in outcome.err
    assert lines == [] and list(live.history) == []
