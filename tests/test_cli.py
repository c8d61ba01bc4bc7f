"""End to end: the `pipeline` command against the fake OpenRouter on 127.0.0.1."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from runner.cli.run import parse_inputs
from runner.errors import UsageError
from runner.fake import Fault

from .conftest import EXAMPLE_PIPELINES, EXAMPLES, FIXTURES, ROOT, TEST_KEY, cost_rows, invoke

EXAMPLE_INPUTS = {
    "ticket_triage": ['{"ticket": "I was charged twice for the Pro plan and the Mobile app crashes."}'],
    "product_copy": ["notes=Hand-made oak cutting board, 40x25cm, oil finish, 49 dollars", "max_words:=80"],
    "invoice_check": ["ocr_text=ACME Corp invoice 123: Widget 10.00, Gadget 5.50, total 15.50"],
}


@pytest.mark.parametrize("name", sorted(EXAMPLE_INPUTS))
def test_every_example_runs_with_mock_and_costs_list_each_step(capsys, monkeypatch, db_path, name):
    inputs = [part for value in EXAMPLE_INPUTS[name] for part in ("--input", value)]
    result = invoke(capsys, monkeypatch, "run", str(EXAMPLES / f"{name}.yaml"), "--mock", "--user", "u1", *inputs)
    assert result.code == 0, result.err
    output = json.loads(result.out)
    assert isinstance(output, dict) and output
    assert "1 ok, 0 failed" in result.err and "billed" in result.err

    costs = invoke(capsys, monkeypatch, "costs", "--format", "json", "--include-mock")
    assert costs.code == 0, costs.err
    rows = json.loads(costs.out)
    steps = {row["step"] for row in rows}
    stored = cost_rows(db_path)
    assert steps == {row["step"] for row in stored} and len(rows) == len(steps)
    assert all(row["calls"] == 1 and row["total_tokens"] > 0 and row["cost_usd"] > 0 for row in rows)
    assert all(row["user"] == "u1" for row in rows)


def test_ticket_triage_output_matches_the_pipeline(capsys, monkeypatch):
    result = invoke(
        capsys,
        monkeypatch,
        "run",
        str(EXAMPLES / "ticket_triage.yaml"),
        "--mock",
        "--input",
        EXAMPLE_INPUTS["ticket_triage"][0],
    )
    output = json.loads(result.out)
    assert set(output) == {"label", "products", "reply"}
    assert output["label"]["category"] in {"billing", "bug", "account", "feature_request", "spam"}
    assert 1 <= output["label"]["urgency"] <= 5
    assert isinstance(output["products"], list)
    assert (output["reply"] is None) == (output["label"]["category"] == "spam")


def test_live_mode_talks_to_base_url_and_never_leaks_the_key(capsys, monkeypatch, fake_server, db_path):
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    monkeypatch.setenv("PIPELINE_APP_NAME", "Triage Bot")
    result = invoke(
        capsys, monkeypatch, "-vv", "run", str(EXAMPLES / "ticket_triage.yaml"), "--input", "ticket=Refund please"
    )
    assert result.code == 0, result.err
    chats = [seen for seen in fake_server.fake.history if seen.path == "chat/completions"]
    assert len(chats) >= 2
    assert all(seen.headers["authorization"] == f"Bearer {TEST_KEY}" for seen in chats)
    assert all(seen.headers["x-openrouter-title"] == "Triage Bot" for seen in chats)
    assert TEST_KEY not in result.out + result.err
    stored = b"".join(path.read_bytes() for path in db_path.parent.glob("ledger.db*"))
    assert TEST_KEY.encode() not in stored


def test_missing_key_stops_with_exit_3_and_says_how_to_fix_it(capsys, monkeypatch):
    result = invoke(capsys, monkeypatch, "run", str(EXAMPLES / "ticket_triage.yaml"), "--input", "ticket=hi")
    assert result.code == 3
    assert "OPENROUTER_API_KEY" in result.err and "--mock" in result.err
    assert "Traceback" not in result.err


def test_invalid_input_exits_2_before_any_call(capsys, monkeypatch, fake_server):
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    result = invoke(capsys, monkeypatch, "run", str(EXAMPLES / "ticket_triage.yaml"), "--input", "ticket=")
    assert result.code == 2
    assert "does not match the `input` schema" in result.err and "ticket" in result.err
    assert fake_server.fake.chat_requests == 0


def test_bad_pipeline_exits_2_naming_file_and_line(capsys, monkeypatch):
    path = FIXTURES / "pipelines" / "bad_unknown_key.yaml"
    result = invoke(capsys, monkeypatch, "run", str(path), "--mock", "--input", "text=x")
    assert result.code == 2
    assert f"{path}:10:5: unknown key 'temprature'" in result.err


def test_rejected_key_exits_3(capsys, monkeypatch, fake_server):
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    fake_server.fake.enqueue(Fault("status", status=401, times=5))
    result = invoke(capsys, monkeypatch, "run", str(EXAMPLES / "ticket_triage.yaml"), "--input", "ticket=hi")
    assert result.code == 3
    assert "rejected the API key" in result.err and TEST_KEY not in result.err


def test_failed_step_exits_1_and_names_the_step(capsys, monkeypatch, fake_server, db_path):
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    fake_server.fake.enqueue(Fault("status", status=400, message="bad parameter temperature"))
    result = invoke(capsys, monkeypatch, "run", str(EXAMPLES / "invoice_check.yaml"), "--input", "ocr_text=x")
    assert result.code == 1
    assert "step 'extract' failed (rejected)" in result.err
    assert "bad parameter temperature" in result.err  # logged in full on stderr


def test_validate_examples_and_broken_files(capsys, monkeypatch):
    good = invoke(capsys, monkeypatch, "validate", str(EXAMPLES))
    assert good.code == 0 and good.out.count(": ok (") == len(EXAMPLE_PIPELINES)
    bad = invoke(capsys, monkeypatch, "validate", str(EXAMPLES / "ticket_triage.yaml"), str(FIXTURES / "pipelines"))
    assert bad.code == 2
    checked = 1 + len(list((FIXTURES / "pipelines").glob("*.yaml")))
    assert "bad_cycle.yaml" in bad.err and f"in {checked} file(s)" in bad.err


def test_costs_formats_and_grouping(capsys, monkeypatch):
    assert (
        invoke(capsys, monkeypatch, "run", str(EXAMPLES / "ticket_triage.yaml"), "--mock", "--input", "ticket=hi").code
        == 0
    )
    table = invoke(capsys, monkeypatch, "costs", "--by", "module", "--include-mock")
    assert table.code == 0 and "module" in table.out and "triage" in table.out and "total: $" in table.out
    csv_out = invoke(capsys, monkeypatch, "costs", "--by", "model,day", "--format", "csv", "--include-mock")
    assert csv_out.out.splitlines()[0].startswith("model,day,calls,")
    bad = invoke(capsys, monkeypatch, "costs", "--by", "colour")
    assert bad.code == 2 and "choose from" in bad.err


def test_costs_without_a_database_says_so(capsys, monkeypatch, tmp_path):
    result = invoke(capsys, monkeypatch, "costs", "--db", str(tmp_path / "none.db"))
    assert result.code == 2 and "no database" in result.err


def test_parse_inputs():
    assert parse_inputs(('{"a": 1}', "b=2", "c:=[1, 2]", "d=x=y")) == {"a": 1, "b": "2", "c": [1, 2], "d": "x=y"}
    with pytest.raises(UsageError, match="not valid JSON"):
        parse_inputs(("{oops",))
    with pytest.raises(UsageError, match="key=value"):
        parse_inputs(("loose",))


def test_python_dash_m_runner_works_in_a_fresh_process(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "OPENROUTER_API_KEY"}
    env["PIPELINE_DB"] = str(tmp_path / "sub.db")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner",
            "run",
            "pipelines/ticket_triage.yaml",
            "--mock",
            "--input",
            "ticket=My app crashes",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "label" in json.loads(completed.stdout)


FAILURE_PIPELINE = """
name: failures
defaults:
  model: google/gemini-2.5-flash-lite
  fallback_models: [google/gemini-2.5-flash]
  retries: 1
  repair_attempts: 1
steps:
  label:
    prompt: "Label: {{ input.text }}"
    schema:
      type: object
      additionalProperties: false
      required: [category]
      properties: {category: {type: string, enum: [billing, bug]}}
"""
LITE, FLASH = "google/gemini-2.5-flash-lite", "google/gemini-2.5-flash"


@pytest.mark.parametrize(
    ("faults", "exit_code", "calls", "rows"),
    [
        ([Fault("status", status=429, retry_after="0")], 0, [LITE, LITE], [(LITE, "ok")]),
        ([Fault("status", status=503, model=LITE, times=2)], 0, [LITE, LITE, FLASH], [(FLASH, "ok")]),
        ([Fault("hang", delay_s=3, model=LITE, times=2)], 0, [LITE, LITE, FLASH], [(FLASH, "ok")]),
        ([Fault("drop", times=4)], 1, [LITE, LITE, FLASH, FLASH], []),
        ([Fault("status", status=404, model=LITE)], 0, [LITE, FLASH], [(FLASH, "ok")]),
        ([Fault("status", status=400)], 1, [LITE], []),
        ([Fault("status", status=403, metadata={"reasons": ["hate"]})], 1, [LITE], []),
        ([Fault("status", status=401)], 3, [LITE], []),
        ([Fault("status", status=402)], 3, [LITE], []),
        ([Fault("finish", finish_reason="content_filter", model=LITE)], 0, [LITE, FLASH], [(LITE, "content_filter"), (FLASH, "ok")]),
        ([Fault("finish", finish_reason="length", model=LITE)], 0, [LITE, FLASH], [(LITE, "length"), (FLASH, "ok")]),
        ([Fault("error_in_body", model=LITE)], 0, [LITE, FLASH], [(LITE, "error"), (FLASH, "ok")]),
        (
            [Fault("content", content="```json\n{\"category\": \"refund\"}\n```", times=4)],
            1,
            [LITE, LITE, FLASH, FLASH],
            [(LITE, "schema_mismatch"), (LITE, "schema_mismatch"), (FLASH, "schema_mismatch"), (FLASH, "schema_mismatch")],
        ),
        ([Fault("content", content="no json here", model=LITE)], 0, [LITE, LITE], [(LITE, "invalid_json"), (LITE, "ok")]),
    ],
    ids=[
        "429-retry", "5xx-fallback", "timeout-fallback", "dropped-everywhere", "404-next-model", "400-fails-step",
        "403-fails-step", "401-stops-run", "402-stops-run", "content-filter", "length", "error-in-200",
        "schema-mismatch-everywhere", "invalid-json-reask",
    ],
)  # fmt: skip
def test_failure_taxonomy_end_to_end(
    capsys, monkeypatch, tmp_path, fake_server, db_path, faults, exit_code, calls, rows
):
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    path = tmp_path / "failures.yaml"
    path.write_text(FAILURE_PIPELINE.replace("retries: 1", "retries: 1\n  timeout_s: 0.5"))
    for fault in faults:
        fake_server.fake.enqueue(fault)
    result = invoke(capsys, monkeypatch, "run", str(path), "--input", "text=charged twice")
    assert result.code == exit_code, result.err
    assert [body["model"] for body in fake_server.fake.chat_bodies()] == calls
    stored = cost_rows(db_path)
    assert [(row["requested_model"], row["outcome"]) for row in stored] == rows
    assert [row["attempt"] for row in stored] == list(range(1, len(rows) + 1))
    assert "Traceback" not in result.err


def test_runs_and_show_list_what_happened(capsys, monkeypatch, fake_server):
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    fake_server.fake.enqueue(Fault("status", status=400, model="anthropic/claude-sonnet-4.5"))
    failed = invoke(capsys, monkeypatch, "run", str(EXAMPLES / "ticket_triage.yaml"), "--input", "ticket=App crashes")
    assert failed.code == 1
    run_id = failed.err.split("run ", 1)[1].split(":", 1)[0]
    listing = invoke(capsys, monkeypatch, "runs", "--format", "json")
    [row] = json.loads(listing.out)
    assert (row["id"], row["status"], row["records_failed"], row["calls"]) == (run_id, "failed", 1, 2)
    shown = invoke(capsys, monkeypatch, "show", run_id, "--format", "json")
    detail = json.loads(shown.out)
    statuses = {step["step"]: step["status"] for step in detail["steps"]}
    assert statuses == {"classify": "ok", "extract": "ok", "reply": "failed"}
    classify = next(step for step in detail["steps"] if step["step"] == "classify")
    assert set(json.loads(classify["output_json"])) == {"category", "urgency", "summary"}
    table = invoke(capsys, monkeypatch, "show", run_id)
    assert "reply" in table.out and "rejected" in table.out
    missing = invoke(capsys, monkeypatch, "show", "run-nope")
    assert missing.code == 2 and "pipeline runs" in missing.err


def test_nan_and_infinity_are_not_numbers_in_input():
    for value in ("score:=NaN", "score:=Infinity", '{"score": -Infinity}'):
        with pytest.raises(UsageError, match="is not a JSON number"):
            parse_inputs((value,))


CHAIN = ROOT / "bench" / "pipelines" / "chain3.yaml"


def run_ids(db_path) -> list[str]:
    if not db_path.exists():
        return []
    with sqlite3.connect(db_path) as db:
        return [row[0] for row in db.execute("SELECT id FROM runs")]


def make_folder(path):
    path.mkdir()


def make_text_file(path):
    path.write_text("name,total\nnot,sqlite\n")


@pytest.mark.parametrize(
    ("make_db", "words"),
    [(make_folder, "it is a folder; give a file path"), (make_text_file, "it is not a SQLite database")],
    ids=["folder", "not-sqlite"],
)
def test_an_unusable_database_path_is_a_one_line_configuration_stop(capsys, monkeypatch, tmp_path, make_db, words):
    target = tmp_path / "pipeline.db"
    make_db(target)
    result = invoke(capsys, monkeypatch, "run", str(CHAIN), "--mock", "--input", "text=hi", "--db", str(target))
    assert result.code == 3
    assert result.err.strip() == f"error: cannot open the database {target}: {words}"
    listing = invoke(capsys, monkeypatch, "runs", "--db", str(target))
    assert listing.code == 3 and len(listing.err.strip().splitlines()) == 1


@pytest.mark.parametrize("change", ["role", "database"])
def test_an_unknown_postgres_role_or_database_is_a_one_line_configuration_stop(
    capsys, monkeypatch, postgres_url, change
):
    user, rest = postgres_url.split("://", 1)[1].split("@", 1)
    host, _ = rest.rsplit("/", 1)
    url = f"postgresql://nobody_here@{rest}" if change == "role" else f"postgresql://{user}@{host}/no_such_db"
    result = invoke(capsys, monkeypatch, "run", str(CHAIN), "--mock", "--input", "text=hi", "--db", url)
    assert result.code == 3
    [line] = result.err.strip().splitlines()
    assert line.startswith("error: cannot open the database postgresql://")
    assert ("nobody_here" if change == "role" else "no_such_db") in line and "does not exist" in line


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        (["--inputs", "{tmp}/missing.jsonl"], "--inputs {tmp}/missing.jsonl: no such file"),
        (["--inputs", "{tmp}/data.txt"], "use a .jsonl"),
        (["--inputs", "{tmp}/data.jsonl", "--output", "{tmp}/no/such/folder/out.jsonl"], "folder {tmp}/no/such/folder"),
    ],
    ids=["missing-inputs", "unsupported-extension", "output-folder-missing"],
)
def test_unusable_files_are_refused_before_a_run_is_created(capsys, monkeypatch, tmp_path, db_path, arguments, words):
    (tmp_path / "data.txt").write_text('{"text": "hi"}\n')
    (tmp_path / "data.jsonl").write_text('{"text": "hi"}\n')
    arguments = [argument.replace("{tmp}", str(tmp_path)) for argument in arguments]
    result = invoke(capsys, monkeypatch, "run", str(CHAIN), "--mock", *arguments)
    assert result.code == 2
    assert words.replace("{tmp}", str(tmp_path)) in result.err and "Traceback" not in result.err
    assert run_ids(db_path) == []


def test_inputs_from_process_substitution(tmp_path):
    """`--inputs <(cmd)`: the shell hands over a /dev/fd path to a pipe."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OPENROUTER", "PIPELINE"))}
    env["PIPELINE_DB"] = str(tmp_path / "sub.db")
    script = (
        f'{sys.executable} -m runner run {CHAIN} --mock --inputs <(printf \'{{"text": "one"}}\\n{{"text": "two"}}\\n\')'
    )
    completed = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert sorted(json.loads(line)["key"] for line in completed.stdout.splitlines()) == [1, 2]


def test_a_full_disk_stops_the_run_and_keeps_its_records(capsys, monkeypatch, tmp_path, db_path):
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"text": f"message {index}"}) + "\n" for index in range(5)))
    result = invoke(capsys, monkeypatch, "run", str(CHAIN), "--mock", "--inputs", str(data), "--output", "/dev/full")
    assert result.code == 3
    assert "cannot write to --output /dev/full: No space left on device" in result.err and "Traceback" not in result.err
    [run_id] = run_ids(db_path)
    assert f"--resume {run_id}" in result.err
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT status FROM runs").fetchone()[0] == "stopped"
        kept = db.execute("SELECT COUNT(*) FROM records WHERE status = 'ok'").fetchone()[0]
    assert kept >= 1
    out = tmp_path / "out.jsonl"
    resumed = invoke(
        capsys,
        monkeypatch,
        "run",
        str(CHAIN),
        "--mock",
        "--inputs",
        str(data),
        "--output",
        str(out),
        "--resume",
        run_id,
    )
    assert resumed.code == 0 and len(out.read_text().splitlines()) == 5


def test_a_closed_stdout_pipe_stops_quietly(tmp_path, fake_server):
    fake_server.fake.latency_s = 0.02
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"text": f"message {index}"}) + "\n" for index in range(40)))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OPENROUTER", "PIPELINE"))}
    env.update(
        OPENROUTER_API_KEY=TEST_KEY, OPENROUTER_BASE_URL=fake_server.base_url, PIPELINE_DB=str(tmp_path / "pipe.db")
    )
    command = [sys.executable, "-m", "runner", "run", str(CHAIN), "--inputs", str(data), "--concurrency", "2"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = process.stdout.readline()  # `| head -1`
    process.stdout.close()
    _, err = process.communicate(timeout=120)
    assert json.loads(first)["status"] == "ok"
    assert process.returncode == 3  # a stop, like a full disk
    assert b"Traceback" not in err and b"Exception ignored" not in err and b"Broken pipe" not in err
    with sqlite3.connect(tmp_path / "pipe.db") as db:
        status, kept = db.execute("SELECT status, (SELECT COUNT(*) FROM records) FROM runs").fetchone()
    assert status == "stopped" and 1 <= kept < 40


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("OPENROUTER_API_KEY", TEST_KEY + "\n", "OPENROUTER_API_KEY contains a space, a line break"),
        (
            "PIPELINE_APP_NAME",
            "Tri\u00e4ge Bot",
            "PIPELINE_APP_NAME is sent as an HTTP header and must be printable ASCII",
        ),
    ],
    ids=["key-with-newline", "non-ascii-app-name"],
)
def test_unusable_header_values_are_a_one_line_configuration_stop(capsys, monkeypatch, variable, value, words):
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv(variable, value)
    result = invoke(capsys, monkeypatch, "run", str(CHAIN), "--input", "text=hi")
    assert result.code == 3
    [line] = result.err.strip().splitlines()
    assert words in line and TEST_KEY not in line
