"""Faults a reviewer found using the CLI (issue 8): each end to end, as the user saw it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace

import pytest

from runner.fake import Fault
from runner.report.tables import money
from runner.settings import Settings

from .conftest import ROOT, TEST_KEY, cost_rows, invoke, write_pipeline

SIMPLE = """\
name: simple
steps:
  answer:
    model: google/gemini-2.5-flash-lite
    prompt: "Answer {{ input.q }}"
    schema:
      type: object
      additionalProperties: false
      required: [answer]
      properties:
        answer: {type: string}
"""
RUN_ID = re.compile(r"run (run-\w+):")


def go_live(monkeypatch, server) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", server.base_url)


def test_retry_failed_asks_again_instead_of_replaying_the_cached_bad_replies(
    capsys, monkeypatch, tmp_path, fake_server
):
    go_live(monkeypatch, fake_server)
    pipeline = str(write_pipeline(tmp_path, SIMPLE, "simple.yaml"))
    fake_server.fake.enqueue(Fault("content", content="not json", times=2))
    failed = invoke(capsys, monkeypatch, "run", pipeline, "--input", "q=x")
    assert failed.code == 1 and "invalid_json" in failed.err
    run_id = RUN_ID.search(failed.err)[1]
    billed = fake_server.fake.billed_calls

    retried = invoke(capsys, monkeypatch, "run", pipeline, "--input", "q=x", "--resume", run_id, "--retry-failed")
    assert retried.code == 0, retried.err
    assert "1 billed, 0 from cache" in retried.err
    assert fake_server.fake.billed_calls == billed + 1


def pipeline_command(tmp_path, *args: str, stdout) -> subprocess.CompletedProcess:
    """`pipeline ARGS` in a process of its own, its stdout where a shell would send it."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OPENROUTER", "PIPELINE"))}
    env.update(PIPELINE_DB=str(tmp_path / "out.db"), PIPELINE_CACHE_DIR=str(tmp_path / "cache"))
    command = [sys.executable, "-m", "runner", *args]
    return subprocess.run(command, cwd=ROOT, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=60)


def test_a_full_stdout_is_one_line_and_exit_3_for_every_command(tmp_path):
    pipeline = str(write_pipeline(tmp_path, SIMPLE, "simple.yaml"))
    with open("/dev/full", "w") as full:
        ran = pipeline_command(tmp_path, "run", pipeline, "--mock", "--input", "q=x", stdout=full)
        run_id = RUN_ID.search(ran.stderr)[1]
        assert ran.returncode == 3, ran.stderr
        assert "error: cannot write to stdout: No space left on device" in ran.stderr
        assert f"the record is kept in the database: pipeline show {run_id}" in ran.stderr
        for args in (["runs"], ["costs"], ["models"], ["validate", pipeline], ["graph", pipeline]):
            listed = pipeline_command(tmp_path, *args, stdout=full)
            assert listed.returncode == 3, (args, listed.stderr)
            assert listed.stderr.strip().splitlines()[-1] == "error: cannot write to stdout: No space left on device"
            assert "Traceback" not in listed.stderr and "Exception ignored" not in listed.stderr
    assert "Traceback" not in ran.stderr and "Exception ignored" not in ran.stderr


def test_a_single_record_into_a_closed_pipe_exits_3_quietly(tmp_path):
    pipeline = str(write_pipeline(tmp_path, SIMPLE, "simple.yaml"))
    reader, writer = os.pipe()
    os.close(reader)  # `| true`: nobody reads
    with os.fdopen(writer, "w") as closed:
        ran = pipeline_command(tmp_path, "run", pipeline, "--mock", "--input", "q=x", stdout=closed)
    assert ran.returncode == 3, ran.stderr
    assert "Traceback" not in ran.stderr and "Exception ignored" not in ran.stderr and "Broken pipe" not in ran.stderr


def test_show_totals_every_attempt_and_says_why_a_reply_was_refused(capsys, monkeypatch, tmp_path, fake_server):
    go_live(monkeypatch, fake_server)
    pipeline = str(write_pipeline(tmp_path, SIMPLE, "simple.yaml"))
    fake_server.fake.enqueue(Fault("content", content="not json", times=2))
    failed = invoke(capsys, monkeypatch, "run", pipeline, "--input", "q=x")
    run_id = RUN_ID.search(failed.err)[1]
    shown = invoke(capsys, monkeypatch, "show", run_id)
    assert "invalid_json" in shown.out and "not valid JSON" in shown.out
    invoke(capsys, monkeypatch, "run", pipeline, "--input", "q=x", "--resume", run_id, "--retry-failed")

    listed = json.loads(invoke(capsys, monkeypatch, "runs", "--format", "json").out)
    spent = money(next(row["cost_usd"] for row in listed if row["id"] == run_id))
    costs = invoke(capsys, monkeypatch, "costs", "--run", run_id).out
    shown = invoke(capsys, monkeypatch, "show", run_id).out
    assert f"total: {spent}" in costs
    assert [line for line in shown.splitlines() if line.startswith("total")] == [
        f"total: {spent} (3 billed call(s), earlier attempts included)"
    ]


def test_costs_upstream_counts_only_what_providers_billed_for_byok(capsys, monkeypatch, tmp_path, fake_server, db_path):
    go_live(monkeypatch, fake_server)
    pipeline = str(write_pipeline(tmp_path, SIMPLE, "simple.yaml"))
    fake_server.fake.enqueue(Fault("byok"))
    assert invoke(capsys, monkeypatch, "run", pipeline, "--input", "q=byok").code == 0
    assert invoke(capsys, monkeypatch, "run", pipeline, "--input", "q=credits").code == 0
    byok, credits = cost_rows(db_path)
    assert (byok["is_byok"], credits["is_byok"]) == (1, 0) and credits["upstream_cost_usd"] > 0  # inside cost_usd

    [total] = json.loads(invoke(capsys, monkeypatch, "costs", "--by", "", "--upstream", "--format", "json").out)
    assert total["byok_upstream_usd"] == byok["upstream_cost_usd"] and total["byok_calls"] == 1
    table = invoke(capsys, monkeypatch, "costs", "--upstream").out
    assert f"billed by providers (BYOK): {money(byok['upstream_cost_usd'])}" in table


LONE_EXPRESSIONS = """\
name: l3
steps:
  a:
    model: google/gemini-2.5-flash-lite
    prompt: "{{ PROMPT }}"
output:
  x: "{{ steps.a.output }}"
  y: "{{ OUTPUT }}"
"""


@pytest.mark.parametrize(
    ("prompt", "output", "where"),
    [
        ("input.q + input.n", "1", "l3.yaml:5: `prompt` of step 'a'"),
        ("input.q", "input.q + input.n", "l3.yaml:8: `output.y`"),
    ],
)
def test_a_type_error_in_a_lone_expression_names_its_line_in_json_words(
    capsys, monkeypatch, tmp_path, prompt, output, where
):
    text = LONE_EXPRESSIONS.replace("PROMPT", prompt).replace("OUTPUT", output)
    pipeline = str(write_pipeline(tmp_path, text, "l3.yaml"))
    failed = invoke(capsys, monkeypatch, "run", pipeline, "--mock", "--input", '{"q": "a", "n": 1}')
    assert failed.code == 1
    message = json.loads(failed.out)["error"]["message"]
    assert message.endswith(f'{where}: TypeError: can only concatenate string (not "number") to string'), message


def test_a_wrong_path_on_an_openrouter_shaped_server_stops_once_naming_the_url(
    capsys, monkeypatch, tmp_path, fake_server
):
    wrong = fake_server.base_url.replace("/api/v1", "/wrong/path")
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", wrong)
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"q": f"record {n}"}) + "\n" for n in range(3)), encoding="utf-8")
    pipeline = str(write_pipeline(tmp_path, SIMPLE, "simple.yaml"))
    stopped = invoke(capsys, monkeypatch, "run", pipeline, "--inputs", str(data))
    assert stopped.code == 3, stopped.err
    assert f"{wrong}/models" in stopped.err and "OPENROUTER_BASE_URL" in stopped.err
    assert [seen.path for seen in fake_server.fake.history] == ["wrong/path/models"]  # no record was tried


def test_costs_of_a_mock_run_say_they_are_the_fakes(capsys, monkeypatch, tmp_path):
    pipeline = str(write_pipeline(tmp_path, SIMPLE, "simple.yaml"))
    run_id = RUN_ID.search(invoke(capsys, monkeypatch, "run", pipeline, "--mock", "--input", "q=x").err)[1]
    costs = invoke(capsys, monkeypatch, "costs", "--run", run_id)
    assert costs.code == 0 and "total:" in costs.out
    assert f"run {run_id} is a --mock run: these are the fake's costs, nothing was billed" in costs.err


def test_the_run_summary_says_how_many_costs_are_estimates(capsys, monkeypatch, tmp_path, fake_server):
    go_live(monkeypatch, fake_server)
    from_env = Settings.from_env.__func__
    quick = classmethod(lambda cls, *args, **kwargs: replace(from_env(cls, *args, **kwargs), generation_wait_s=0.01))
    monkeypatch.setattr(Settings, "from_env", quick)  # GET /generation is not waited for 10 s
    fake_server.fake.generations_never_found = True
    fake_server.fake.enqueue(Fault("no_cost"))  # no usage.cost and no generation record: priced from the catalogue
    pipeline = str(write_pipeline(tmp_path, SIMPLE, "simple.yaml"))
    ran = invoke(capsys, monkeypatch, "run", pipeline, "--input", "q=x")
    assert ran.code == 0, ran.err
    assert re.search(r"cost: \$[\d.]+ \(1 estimated\);", ran.err), ran.err


def test_a_base_url_with_credentials_is_a_configuration_stop_that_does_not_repeat_them(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", "http://user:s3cret@127.0.0.1:9/api/v1")
    result = invoke(capsys, monkeypatch, "run", str(ROOT / "pipelines" / "ticket_triage.yaml"), "--input", "ticket=x")
    assert result.code == 3, result.err
    assert "must not hold a user:password@ part" in result.err
    assert "s3cret" not in result.out + result.err and "Traceback" not in result.err


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"chat": [{"no_key": 1}]}'])
def test_a_corrupt_cassette_is_named_not_a_traceback(capsys, monkeypatch, tmp_path, content):
    for name in ("ticket_triage.yaml", "ticket_triage.cases.yaml"):
        (tmp_path / name).write_text((ROOT / "pipelines" / name).read_text(encoding="utf-8"), encoding="utf-8")
    shutil.copytree(ROOT / "pipelines" / "schemas", tmp_path / "schemas")
    shutil.copytree(ROOT / "pipelines" / "prompts", tmp_path / "prompts")
    (tmp_path / "ticket_triage.cassette.json").write_text(content, encoding="utf-8")
    result = invoke(
        capsys,
        monkeypatch,
        "test",
        str(tmp_path / "ticket_triage.yaml"),
        "--cases",
        str(tmp_path / "ticket_triage.cases.yaml"),
    )
    assert result.code == 2, result.err
    assert "ticket_triage.cassette.json: not a cassette this runner wrote" in result.err
    assert "--record" in result.err
