"""`pipeline test` for models that answer differently each time (DESIGN §10): pass@N and pass^N with
`--repeat`, a comparison with an earlier `--json` report (`--baseline`), the pull-request summary
(`--markdown`) with regressions first, and models compared with `--try`."""

from __future__ import annotations

import json
import re

import pytest

from runner.fake import Fault

from .conftest import TEST_KEY, invoke, write_pipeline

PIPELINE = """
name: yes-or-no
defaults:
  model: google/gemini-2.5-flash-lite
  fallback_models: [google/gemini-2.5-flash]
steps:
  answer:
    prompt: "Answer yes or no: {{ input.question }}"
output: "{{ steps.answer.output }}"
"""

# `steady` comes first in the file: a regression of `flaky` must still come first in the summary.
CASES = """
cases:
  - name: steady
    input: {question: "Is water wet?"}
    assert:
      - {max_cost_usd: 1}
  - name: flaky
    input: {question: "Is the sky blue?"}
    assert:
      - {path: output, equals: "yes"}
"""


@pytest.fixture
def live_fake(fake_server, monkeypatch, tmp_path):
    """`--mode live` against the fake on 127.0.0.1, whose replies a test scripts in order."""
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    return fake_server.fake


def _files(tmp_path):
    return str(write_pipeline(tmp_path, PIPELINE)), str(write_pipeline(tmp_path, CASES, "cases.yaml"))


def _test(capsys, monkeypatch, tmp_path, *args):
    pipeline, cases = _files(tmp_path)
    db = str(tmp_path / "test.db")
    return invoke(capsys, monkeypatch, "test", pipeline, "--cases", cases, "--db", db, *args)


def _script_flaky(fake):
    """steady's three runs answer anything; flaky's answer yes once, then no twice."""
    fake.enqueue(Fault("content", content="no", times=3))
    fake.enqueue(Fault("content", content="yes"))
    fake.enqueue(Fault("content", content="no", times=2))


def test_repeat_reports_pass_at_n_and_pass_hat_n_and_never_reuses_the_cache(tmp_path, capsys, monkeypatch, live_fake):
    _script_flaky(live_fake)
    outcome = _test(capsys, monkeypatch, tmp_path, "--mode", "live", "--repeat", "3", "--json")
    assert outcome.code == 1  # flaky's assertion held in 1 run of 3
    report = {case["name"]: case for case in json.loads(outcome.out)}
    flaky = report["flaky"]
    assert (flaky["runs"], flaky["runs_passed"]) == (3, 1)
    assert flaky["pass_at_n"] is True and flaky["pass_all_n"] is False
    assert report["steady"]["pass_at_n"] is True and report["steady"]["pass_all_n"] is True
    assert flaky["cost_usd"] > 0 and flaky["latency_ms"] >= 0
    assert live_fake.chat_requests == 6  # the same prompt three times: asked three times, never from the cache


def test_repeat_prints_pass_at_n_per_case(tmp_path, capsys, monkeypatch, live_fake):
    _script_flaky(live_fake)
    outcome = _test(capsys, monkeypatch, tmp_path, "--mode", "live", "--repeat", "3")
    assert "flaky: 1/3 runs passed, pass@3 yes, pass^3 no" in outcome.out
    assert "steady: 3/3 runs passed, pass@3 yes, pass^3 yes" in outcome.out


def test_markdown_against_a_baseline_puts_the_regressed_case_first(tmp_path, capsys, monkeypatch, live_fake):
    live_fake.enqueue(Fault("content", content="yes", times=6))
    before = _test(capsys, monkeypatch, tmp_path, "--mode", "live", "--repeat", "3", "--json")
    assert before.code == 0, before.err
    baseline = tmp_path / "old.json"
    baseline.write_text(before.out, encoding="utf-8")

    _script_flaky(live_fake)
    summary = tmp_path / "summary.md"
    outcome = _test(
        capsys, monkeypatch, tmp_path, "--mode", "live", "--repeat", "3",
        "--baseline", str(baseline), "--markdown", str(summary),
    )  # fmt: skip
    assert outcome.code == 1
    assert "regressed since" in outcome.err and "flaky" in outcome.err
    text = summary.read_text(encoding="utf-8")
    assert "**1 of 2 cases pass** (baseline: 2 of 2)" in text
    assert "**Regressed:** flaky" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split("|")[2].strip() for row in rows] == ["flaky", "steady"]
    assert "regressed" in rows[0] and "1/3 (was 3/3)" in rows[0]
    assert "| ❌ | ❌ |" not in rows[0] and "| ✅ | ❌ |" in rows[0]  # pass@3 yes, pass^3 no
    assert re.search(r"\$\d+\.\d+ \([+-]\d+%\) \| \d+ ms \([+-]\d+%\) \|$", rows[1])  # against the baseline


def test_markdown_without_a_baseline(tmp_path, capsys, monkeypatch):
    summary = tmp_path / "summary.md"
    outcome = _test(capsys, monkeypatch, tmp_path, "--mode", "mock", "--markdown", str(summary))
    assert outcome.code == 1  # the fake never answers exactly "yes"
    text = summary.read_text(encoding="utf-8")
    assert (
        "**1 of 2 cases pass** · one run of every case costs $" in text
        and "baseline" not in text
        and "Regressed" not in text
    )
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split("|")[1].strip() for row in rows] == ["❌ failing", "✅"]
    assert [row.split("|")[2].strip() for row in rows] == ["flaky", "steady"]


def test_try_prints_a_table_of_each_model_and_names_the_cheapest_that_passes(tmp_path, capsys, monkeypatch):
    pipeline, _ = _files(tmp_path)
    cases = write_pipeline(
        tmp_path, "cases:\n  - name: any\n    input: {question: q}\n    assert:\n      - {max_cost_usd: 1}\n", "c.yaml"
    )
    outcome = invoke(
        capsys, monkeypatch, "test", pipeline, "--cases", str(cases), "--mode", "mock",
        "--try", "answer=google/gemini-2.5-flash,google/gemini-2.5-flash-lite",
    )  # fmt: skip
    assert outcome.code == 0, outcome.err
    lines = outcome.out.splitlines()
    assert lines[0].split() == ["step", "model", "cases_passed", "pass_rate", "cost_usd", "mean_latency_ms"]
    rows = {line.split()[1]: line.split() for line in lines[2:] if line.strip()}
    assert set(rows) == {"google/gemini-2.5-flash", "google/gemini-2.5-flash-lite"}
    assert rows["google/gemini-2.5-flash"][2] == "1/1" and rows["google/gemini-2.5-flash"][3] == "100%"
    cost = {model: float(row[4].lstrip("$")) for model, row in rows.items()}
    assert cost["google/gemini-2.5-flash-lite"] < cost["google/gemini-2.5-flash"]
    assert "cheapest that passes every case: answer=google/gemini-2.5-flash-lite" in outcome.err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--try", "answer=google/gemini-2.5-flash"), "--mode mock or --mode live"),
        (("--mode", "mock", "--try", "nope=google/gemini-2.5-flash"), "no step 'nope'"),
        (("--mode", "mock", "--try", "answer="), "STEP=MODEL"),
    ],
)
def test_try_refuses_what_it_cannot_compare(tmp_path, capsys, monkeypatch, args, words):
    outcome = _test(capsys, monkeypatch, tmp_path, *args)
    assert outcome.code == 2 and words in outcome.err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--markdown", "{tmp}/no-such-folder/s.md"), "--markdown {tmp}/no-such-folder/s.md: there is no folder"),
        (("--junit", "{tmp}/p.yaml/r.xml"), "--junit {tmp}/p.yaml/r.xml: there is no folder"),
        (("--markdown", "."), "that is a folder"),
        (("--try", "answer=nosuch/model"), "--try answer=nosuch/model: the model catalogue has no model"),
        (("--try", "answer=google/gemini-2.5-flsh"), "did you mean google/gemini-2.5-flash"),
        (("--try", "answer=google/gemini-2.5-flash", "--baseline", "old.json"), "--baseline goes with a run"),
        (("--try", "answer=google/gemini-2.5-flash", "--junit", "r.xml"), "--junit goes with a run"),
    ],
)
def test_options_that_cannot_work_are_refused_before_any_case_runs(
    tmp_path, capsys, monkeypatch, live_fake, args, words
):
    outcome = _test(capsys, monkeypatch, tmp_path, "--mode", "live", *(arg.format(tmp=tmp_path) for arg in args))
    assert outcome.code == 2, outcome.err
    assert words.format(tmp=tmp_path) in outcome.err
    assert live_fake.chat_requests == 0  # nothing was asked, nothing billed


def test_a_baseline_that_is_not_a_report_is_refused(tmp_path, capsys, monkeypatch):
    old = tmp_path / "old.json"
    old.write_text('{"not": "a report"}', encoding="utf-8")
    outcome = _test(capsys, monkeypatch, tmp_path, "--mode", "mock", "--baseline", str(old))
    assert outcome.code == 2 and "--baseline" in outcome.err and "--json` report" in outcome.err


def test_try_with_json_gives_the_rows_as_numbers(tmp_path, capsys, monkeypatch):
    outcome = _test(
        capsys, monkeypatch, tmp_path, "--mode", "mock", "--json", "--try", "answer=google/gemini-2.5-flash"
    )
    assert outcome.code == 1  # flaky fails on the fake whatever the model
    (row,) = json.loads(outcome.out)
    assert row["model"] == "google/gemini-2.5-flash" and row["cases_passed"] == "1/2"
    assert row["pass_rate"] == 0.5 and row["cost_usd"] > 0
    assert "no choice passes every case" in outcome.err
