"""`pipeline test`: every assertion kind, the three modes, record then replay, reports."""

from __future__ import annotations

import asyncio
import json
import shutil
import xml.etree.ElementTree as ElementTree

import pytest

from runner.api import load_pipeline
from runner.errors import SpecError
from runner.fake import Fault
from runner.fake.server import mock_transport
from runner.testing.assertions import Assertion, check
from runner.testing.cases import load_cases, run_cases

from .conftest import EXAMPLES, cost_rows, invoke

VIEW = {
    "input": {"ticket": "hi"},
    "output": {
        "label": {"category": "billing", "urgency": 4},
        "reply": "Sorry about the double charge.",
        "tags": ["a", "b"],
    },
    "steps": {"classify": {"output": {"category": "billing"}, "model": "google/gemini-2.5-flash-lite", "status": "ok"}},
    "cost_usd": 0.002,
    "latency_ms": 850,
}


def assertion(kind, expected, path="output", step=None):
    return Assertion(kind, expected, path, step, None, None, None)


@pytest.mark.parametrize(
    ("kind", "path", "good", "bad"),
    [
        ("equals", "output.label.category", "billing", "bug"),
        ("equals", "steps.classify.output.category", "billing", "account"),
        ("contains", "output.reply", "double charge", "refund"),
        ("contains", "output.tags", "a", "z"),
        ("regex", "output.reply", r"(?i)^sorry", r"^Thanks"),
        (
            "json_schema",
            "output.label",
            {"type": "object", "required": ["urgency"]},
            {"type": "object", "required": ["team"]},
        ),
        ("one_of", "output.label.urgency", [3, 4, 5], [1, 2]),
        ("max_cost_usd", "output", 0.01, 0.001),
        ("max_latency_ms", "output", 1000, 500),
    ],
)
def test_every_value_assertion_passes_and_fails(kind, path, good, bad):
    assert check(assertion(kind, good, path), VIEW).passed
    failed = check(assertion(kind, bad, path), VIEW)
    assert not failed.passed


def test_model_assertion_and_missing_paths():
    assert check(assertion("model", "google/gemini-2.5-flash-lite", step="classify"), VIEW).passed
    assert not check(assertion("model", "openai/gpt-4o-mini", step="classify"), VIEW).passed
    missing = check(assertion("equals", 1, "output.nope"), VIEW)
    assert not missing.passed and missing.detail == "nothing at output.nope"


def test_bad_cases_files_name_the_line(tmp_path):
    path = tmp_path / "cases.yaml"
    path.write_text("cases:\n  - input: {ticket: hi}\n    assert:\n      - {path: output, equal: 1}\n")
    with pytest.raises(SpecError) as caught:
        load_cases(path)
    assert caught.value.line == 4 and "unknown assertion key 'equal'" in str(caught.value)
    path.write_text("cases:\n  - input: {ticket: hi}\n    assert:\n      - {path: output, regex: '(unclosed'}\n")
    with pytest.raises(SpecError, match="does not compile"):
        load_cases(path)


def test_judge_is_a_recorded_model_call(tmp_path, fake, settings, db_path):
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "judge_model: openai/gpt-4o-mini\ncases:\n  - name: polite\n    input: {ticket: 'I was charged twice'}\n"
        "    assert:\n      - {path: output.reply, judge: 'The reply apologises'}\n"
        "  - name: rude\n    input: {ticket: 'Where is my parcel'}\n"
        "    assert:\n      - {path: output.reply, judge: 'The reply apologises'}\n"
    )
    fake.enqueue(Fault("content", content='{"pass": true, "reason": "it apologises"}', model="openai/gpt-4o-mini"))
    fake.enqueue(Fault("content", content='{"pass": false, "reason": "no apology"}', model="openai/gpt-4o-mini"))
    pipeline = load_pipeline(EXAMPLES / "ticket_triage.yaml")
    results = asyncio.run(
        run_cases(pipeline, load_cases(cases), settings, transport_factory=lambda: mock_transport(fake))
    )
    assert [result.passed for result in results] == [True, False]
    assert results[1].results[0].failed_check.detail == "no apology"
    judged = [row for row in cost_rows(db_path) if row["module"] == "test"]
    assert len(judged) == 2 and all(row["model"] == "openai/gpt-4o-mini" and row["step"] == "judge" for row in judged)


def test_repeat_with_a_pass_rate(tmp_path, fake, settings):
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "cases:\n  - name: flaky\n    input: {ticket: 'hi'}\n"
        "    assert:\n      - {path: steps.classify.output.category, equals: bug}\n"
    )
    pipeline = load_pipeline(EXAMPLES / "ticket_triage.yaml")

    def outcome(pass_rate):
        fake.faults.clear()
        fake.enqueue(
            Fault(
                "content",
                content='{"category": "bug", "urgency": 1, "summary": "x"}',
                times=1,
                model="google/gemini-2.5-flash-lite",
            )
        )
        [result] = asyncio.run(
            run_cases(
                pipeline,
                load_cases(cases),
                settings,
                transport_factory=lambda: mock_transport(fake),
                repeat=4,
                pass_rate=pass_rate,
            )
        )
        return result

    strict = outcome(1.0)
    assert strict.results[0].runs == 4 and 1 <= strict.results[0].passes < 4 and not strict.passed
    assert outcome(0.25).passed


@pytest.fixture
def example(tmp_path):
    """A copy of ticket_triage with its cases, so the test can record and edit freely."""
    for name in ("ticket_triage.yaml", "ticket_triage.cases.yaml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    shutil.copytree(EXAMPLES / "schemas", tmp_path / "schemas")
    return tmp_path


def test_shipped_examples_pass_in_replay(capsys, monkeypatch):
    for name in ("ticket_triage", "product_copy", "invoice_check"):
        result = invoke(
            capsys, monkeypatch, "test", str(EXAMPLES / f"{name}.yaml"), "--cases", str(EXAMPLES / f"{name}.cases.yaml")
        )
        assert result.code == 0, result.out + result.err
        assert "0 failed" in result.err


def run_example(capsys, monkeypatch, example, *extra):
    """`pipeline test` on the copied ticket_triage example and its cases."""
    pipeline, cases = example / "ticket_triage.yaml", example / "ticket_triage.cases.yaml"
    return invoke(capsys, monkeypatch, "test", str(pipeline), "--cases", str(cases), *extra)


def test_mock_mode_runs_without_a_cassette(capsys, monkeypatch, example):
    result = run_example(capsys, monkeypatch, example, "--mode", "mock")
    assert result.code == 0, result.out
    assert "PASS double charge gets a label and a reply" in result.out


def test_replay_without_a_cassette_says_how_to_record(capsys, monkeypatch, example):
    result = run_example(capsys, monkeypatch, example)
    assert result.code == 2 and "no cassette at" in result.err and "--record" in result.err


def test_record_then_replay_offline_then_miss_after_a_prompt_edit(capsys, monkeypatch, example, fake_server):
    pipeline, cases = example / "ticket_triage.yaml", example / "ticket_triage.cases.yaml"
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-recording")
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    recorded = invoke(capsys, monkeypatch, "test", str(pipeline), "--cases", str(cases), "--record")
    assert recorded.code == 0, recorded.out + recorded.err
    tape = example / "ticket_triage.cassette.json"
    assert "sk-or-v1-recording" not in tape.read_text()
    live_calls = fake_server.fake.chat_requests

    monkeypatch.setenv("OPENROUTER_BASE_URL", "http://127.0.0.1:9/api/v1")  # replay needs no server at all
    monkeypatch.delenv("OPENROUTER_API_KEY")
    replayed = invoke(capsys, monkeypatch, "test", str(pipeline), "--cases", str(cases), "--json")
    assert replayed.code == 0
    assert [case["passed"] for case in json.loads(replayed.out)] == [True, True]
    assert fake_server.fake.chat_requests == live_calls

    pipeline.write_text(pipeline.read_text().replace("List the products named", "Name the products in"))
    missed = invoke(capsys, monkeypatch, "test", str(pipeline), "--cases", str(cases))
    assert missed.code == 1
    assert "error: step 'extract': a request to google/gemini-2.5-flash-lite" in missed.out
    assert "re-record with `pipeline test ... --record`" in missed.out


def test_a_regressed_output_fails_with_expected_and_actual_and_junit(capsys, monkeypatch, example, tmp_path):
    cases = example / "ticket_triage.cases.yaml"
    cases.write_text(
        "cases:\n  - name: regressed\n    input: {ticket: 'hi'}\n    assert:\n"
        "      - {path: steps.classify.output.urgency, equals: 99}\n      - {max_cost_usd: 1}\n"
    )
    report = tmp_path / "reports" / "junit.xml"
    result = invoke(
        capsys,
        monkeypatch,
        "test",
        str(example / "ticket_triage.yaml"),
        "--cases",
        str(cases),
        "--mode",
        "mock",
        "--junit",
        str(report),
    )
    assert result.code == 1
    assert "FAIL regressed" in result.out and "steps.classify.output.urgency equals 99 (line 5)" in result.out
    assert "expected: 99" in result.out and "actual:   " in result.out
    suite = ElementTree.parse(report).getroot().find("testsuite")
    assert suite.get("tests") == "1" and suite.get("failures") == "1" and suite.get("errors") == "0"
    failure = suite.find("testcase").find("failure")
    assert failure is not None and "expected 99, actual" in failure.get("message")
