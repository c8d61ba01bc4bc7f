"""`--log-format json`: every stderr line is one JSON object; a run's records, steps and replies are
events with their run, record, step, attempt, outcome, status and generation id; the API key and the
prompt's text never appear anywhere."""

import json
import logging
import sqlite3

import pytest

from runner.fake import Fault
from runner.report.logs import JsonLines, JsonLogFormatter, scrub

from .conftest import invoke, write_pipeline

SENTINEL_KEY = "sk-or-v1-SENTINEL-KEY-must-never-appear-4242"
PROMPT_TEXT = "PROMPT-SECRET-customer-wrote-this"
PIPELINE = """
name: logs-demo
input: {type: object, required: [text], properties: {text: {type: string}}}
defaults: {model: google/gemini-2.5-flash-lite, max_tokens: 200}
steps:
  label:
    prompt: "Label this: {{ input.text }}"
    schema: {type: object, additionalProperties: false, required: [label], properties: {label: {type: string}}}
  answer:
    model: openai/gpt-4o-mini
    prompt: "Answer {{ steps.label.output.label }} for {{ input.text }}"
output: "{{ steps.answer.output }}"
"""


@pytest.fixture
def logged_run(capsys, monkeypatch, tmp_path, db_path, fake_server):
    """A run with a moderation failure (the provider quotes the prompt back) and a re-asked bad reply."""
    monkeypatch.setenv("OPENROUTER_API_KEY", SENTINEL_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    fake_server.fake.enqueue(Fault("moderation", model="openai/gpt-4o-mini"))
    fake_server.fake.enqueue(Fault("content", content="not json at all", model="google/gemini-2.5-flash-lite"))
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"text": f"{PROMPT_TEXT} {index}"}) + "\n" for index in range(3)))
    output = tmp_path / "out.jsonl"
    pipeline = write_pipeline(tmp_path, PIPELINE)

    def run(*flags: str):
        return invoke(
            capsys, monkeypatch, *flags, "run", str(pipeline), "--inputs", str(inputs), "--output", str(output),
            "--fetch-generations",
        )  # fmt: skip

    return run, output


def events(stderr: str) -> list[dict]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(isinstance(entry, dict) and {"time", "level", "message"} <= set(entry) for entry in parsed)
    return parsed


def test_every_stderr_line_is_a_json_event_with_the_runs_fields(logged_run, db_path):
    run, _ = logged_run
    result = run("--log-format", "json")
    assert result.code == 1  # the moderated record failed
    entries = events(result.err)
    with sqlite3.connect(db_path) as db:
        (run_id,) = db.execute("SELECT id FROM runs").fetchone()
        billed = {row[0] for row in db.execute("SELECT id FROM cost_records WHERE cached = 0")}
    run_events = [entry for entry in entries if entry.get("logger") == "runner.run.eventlog"]
    assert run_events and all(entry["run"] == run_id for entry in run_events)

    replies = [entry for entry in run_events if entry["event"] == "reply"]
    assert {entry["generation_id"] for entry in replies} == billed
    assert {(entry["step"], entry["attempt"], entry["outcome"]) for entry in replies} >= {
        ("label", 1, "invalid_json"),  # the bad reply, then its re-ask
        ("label", 2, "ok"),
    }
    records = {entry["record"]: entry for entry in run_events if entry["event"] == "record_end"}
    assert set(records) == {"1", "2", "3"}
    assert sorted(entry["status"] for entry in records.values()) == ["failed", "ok", "ok"]
    failed = next(entry for entry in records.values() if entry["status"] == "failed")
    assert failed["error_kind"] == "rejected" and failed["step"] == "answer"
    steps = [entry for entry in run_events if entry["event"] == "step_end"]
    assert {(entry["record"], entry["step"]) for entry in steps} == {(r, s) for r in "123" for s in ("label", "answer")}
    (call,) = [entry for entry in run_events if entry["event"] == "call_failed"]
    assert call["http_status"] == 403 and call["level"] == "warning"
    summary = entries[-1]
    assert summary["event"] == "message" and summary["message"].startswith(f"run {run_id}: records: 2 ok, 1 failed")
    # The client's warning about the 403 is there, without the prompt it quoted.
    assert any(entry.get("logger") == "runner.chat.client" and "flagged_input" in entry["message"] for entry in entries)


@pytest.mark.parametrize("verbosity", [(), ("-vv",)])
def test_neither_the_key_nor_the_prompt_appears_anywhere(logged_run, db_path, verbosity):
    run, output = logged_run
    result = run(*verbosity, "--log-format", "json")
    assert result.code == 1
    assert len(events(result.err)) > 10
    for name, text in (("stderr", result.err), ("stdout", result.out), ("output", output.read_text())):
        assert SENTINEL_KEY not in text, name
    assert PROMPT_TEXT not in result.err
    assert SENTINEL_KEY.encode() not in db_path.read_bytes()


@pytest.mark.parametrize("verbosity", [(), ("-v",)])
def test_text_logs_do_not_repeat_the_events(logged_run, verbosity):
    run, _ = logged_run
    result = run(*verbosity)
    assert result.code == 1
    assert '"event"' not in result.err and "runner.run.eventlog" not in result.err
    assert result.err.splitlines()[-1].startswith("run run-")


def test_the_formatter_scrubs_the_key_and_a_quoted_prompt():
    message = 'metadata={"reasons": ["violence"], "flagged_input": "my \\"secret\\" prompt", "provider_name": "X"}'
    record = logging.LogRecord(
        "runner.chat.client", logging.WARNING, "", 1, "key %s: %s", (SENTINEL_KEY, message), None
    )
    record.step = "label"
    line = JsonLogFormatter(SENTINEL_KEY).format(record)
    entry = json.loads(line)
    assert SENTINEL_KEY not in line and "secret" not in line
    assert entry["step"] == "label" and entry["level"] == "warning" and "violence" in entry["message"]
    assert scrub("plain text", None) == "plain text"


def test_other_stderr_lines_become_objects(tmp_path):
    target = tmp_path / "err.txt"
    with target.open("w") as stream:
        lines = JsonLines(stream, SENTINEL_KEY)
        lines.write(f"error: bad key {SENTINEL_KEY}\nhalf ")
        lines.write("a line\n")
        lines.write('{"already": "json"}\n')
        assert not lines.isatty()
    written = [json.loads(line) for line in target.read_text().splitlines()]
    assert written[0]["level"] == "error" and SENTINEL_KEY not in written[0]["message"]
    assert written[1]["message"] == "half a line" and written[2] == {"already": "json"}


def test_a_key_too_short_to_be_real_does_not_mangle_ordinary_text(capsys, monkeypatch, tmp_path, fake_server):
    monkeypatch.setenv("OPENROUTER_API_KEY", "x")  # a key of one letter is in every other word
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    pipeline = write_pipeline(tmp_path, PIPELINE.replace("label", "extract"))
    result = invoke(capsys, monkeypatch, "--log-format", "json", "run", str(pipeline), "--input", '{"text": "hi"}')
    assert result.code == 0, result.err
    steps = {entry["step"] for entry in events(result.err) if entry.get("event") == "step_end"}
    assert steps == {"extract", "answer"}
    assert "[redacted]" not in result.err
    assert scrub("step extract, generation gen-xyz", "x") == "step extract, generation gen-xyz"
    assert scrub(f"key {SENTINEL_KEY}", SENTINEL_KEY) == "key [redacted]"  # a realistic key never shows
