"""The invoice_desk example end to end through the CLI (issue 10's example): a chat step with a schema,
a `for_each` map over its lines, a code step next to the pipeline file and a tool-calling step, run
against the fake OpenRouter on 127.0.0.1, offline with --mock, validated, and its cases replayed."""

from __future__ import annotations

import json
import re
import sys

import pytest
import yaml

from runner.fake import Fault
from runner.store import Store

from .conftest import EXAMPLES, TEST_KEY, cost_rows, invoke, write_pipeline
from .test_store import event

EXAMPLE = EXAMPLES / "invoice_desk.yaml"
CASES = EXAMPLES / "invoice_desk.cases.yaml"
RUN_ID = re.compile(r"run (run-\w+):")
# (step, item_index, round) of every request: one per line checked, one per tool round.
CALLS = [
    ("answer", None, 1),
    ("answer", None, 2),
    ("check_line", 0, None),
    ("check_line", 1, None),
    ("check_line", 2, None),
    ("extract", None, None),
]
LINES = {
    "order_id": "ORD-1042",
    "currency": "EUR",
    "line_items": [
        {"description": "Desk lamp", "quantity": 2, "unit_price": 24.5, "amount": 49.0},
        {"description": "A4 paper ream", "quantity": 10, "unit_price": 4.2, "amount": 42.0},
        {"description": "Ergonomic chair", "quantity": 1, "unit_price": 189.0, "amount": 199.0},
    ],
}


def first_input() -> str:
    return json.dumps(yaml.safe_load(CASES.read_text(encoding="utf-8"))["cases"][0]["input"])


@pytest.fixture
def live(monkeypatch, fake_server):
    """The CLI pointed at the fake as if it were OpenRouter; the extraction answers three lines, and the
    model looks order ORD-1042 up before it answers."""
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    fake = fake_server.fake
    fake.enqueue(Fault("content", content=json.dumps(LINES), model="google/gemini-2.5-flash-lite"))
    fake.enqueue(Fault("tool_calls", arguments='{"order_id": "ORD-1042"}', model="google/gemini-2.5-flash"))
    return fake


def test_every_element_and_every_tool_round_is_a_cost_row_adding_up_to_the_bill(capsys, monkeypatch, live, db_path):
    ran = invoke(capsys, monkeypatch, "run", str(EXAMPLE), "--input", first_input())
    assert ran.code == 0, ran.err
    output = json.loads(ran.out)
    # The code step totalled the three lines and flagged the one whose arithmetic is wrong (1 x 189 != 199).
    assert output["total"] == {"total": 290.0, "currency": "EUR", "lines": 3, "flagged_lines": [2]}
    assert len(output["checks"]) == 3 and output["order_id"] == "ORD-1042"
    rows = cost_rows(db_path)
    assert sorted((row["step"], row["item_index"], row["round"]) for row in rows) == CALLS
    assert all(not row["cached"] for row in rows) and live.chat_requests == 6
    assert sum(row["cost_usd"] for row in rows) == pytest.approx(live.total_cost, abs=1e-12)
    # The tool ran in this process and its result went back to the model in round 2.
    [second_round] = [body for body in live.chat_bodies() if any(m["role"] == "tool" for m in body["messages"])]
    [tool_message] = [message for message in second_round["messages"] if message["role"] == "tool"]
    assert json.loads(tool_message["content"])["status"] == "shipped"
    # The figures `pipeline costs` gives by element and by round are the same rows.
    by_round = json.loads(invoke(capsys, monkeypatch, "costs", "--by", "step,round", "--format", "json").out)
    assert sorted((row["step"], row["round"], row["calls"]) for row in by_round if row["step"] == "answer") == [
        ("answer", 1, 1),
        ("answer", 2, 1),
    ]


def test_show_lists_each_call_with_its_element_and_round(capsys, monkeypatch, live):
    ran = invoke(capsys, monkeypatch, "run", str(EXAMPLE), "--input", first_input())
    assert ran.code == 0, ran.err
    run_id = RUN_ID.search(ran.err)[1]
    detail = json.loads(invoke(capsys, monkeypatch, "show", run_id, "--format", "json").out)
    calls = sorted((call["step"], call["item_index"], call["round"]) for call in detail["calls"])
    assert calls == CALLS
    shown = invoke(capsys, monkeypatch, "show", run_id).out
    header = next(line for line in shown.splitlines() if line.startswith("record_key") and "generation_id" in line)
    assert header.split()[:4] == ["record_key", "step", "item_index", "round"]
    rounds = [match[1] for match in re.finditer(r"^1\s+answer\s+-\s+(\d+)\s+\d+\s+google/", shown, re.MULTILINE)]
    elements = re.findall(r"^1\s+check_line\s+(\d+)\s+-\s+1\s+google/", shown, re.MULTILINE)
    assert (rounds, elements) == (["1", "2"], ["0", "1", "2"]), shown


def test_the_example_runs_offline_with_mock_from_another_folder(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the module next to the pipeline file is found from anywhere
    ran = invoke(capsys, monkeypatch, "run", str(EXAMPLE), "--mock", "--input", first_input())
    assert ran.code == 0, ran.err
    output = json.loads(ran.out)
    assert set(output) == {"order_id", "checks", "total", "reply"}
    assert output["total"]["lines"] == len(output["checks"]) >= 1
    assert "1 ok, 0 failed" in ran.err


def test_validate_reads_the_examples_python_without_importing_it(capsys, monkeypatch):
    before = {name for name in sys.modules if name.endswith("invoice_tools")}
    result = invoke(capsys, monkeypatch, "validate", str(EXAMPLE))
    assert result.code == 0, result.err
    assert f"{EXAMPLE}: ok (4 steps: extract -> check_line -> total -> answer)" in result.out
    assert {name for name in sys.modules if name.endswith("invoice_tools")} == before


def test_the_examples_cases_pass_in_replay(capsys, monkeypatch):
    result = invoke(capsys, monkeypatch, "test", str(EXAMPLE), "--cases", str(CASES))
    assert result.code == 0, result.out + result.err
    assert "2 passed, 0 failed" in result.err


MAPPED_TOOLS = """\
name: mapped-tools
input: {type: object, required: [orders], properties: {orders: {type: array, items: {type: string}}}}
defaults: {model: google/gemini-2.5-flash}
steps:
  status:
    for_each: "{{ input.orders }}"
    as: order
    prompt: "What is the status of order {{ order }}?"
    tools: [invoice_tools:get_order]
"""


def test_a_map_step_with_tools_shows_each_elements_rounds(capsys, monkeypatch, fake_server, tmp_path, db_path):
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    (tmp_path / "invoice_tools.py").write_text((EXAMPLES / "invoice_tools.py").read_text(encoding="utf-8"))
    path = write_pipeline(tmp_path, MAPPED_TOOLS)
    ran = invoke(capsys, monkeypatch, "run", str(path), "--input", '{"orders": ["ORD-1042", "ORD-2077"]}')
    assert ran.code == 0, ran.err
    rows = cost_rows(db_path)
    assert sorted((row["item_index"], row["round"]) for row in rows) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert sum(row["cost_usd"] for row in rows) == pytest.approx(fake_server.fake.total_cost, abs=1e-12)
    run_id = RUN_ID.search(ran.err)[1]
    shown = invoke(capsys, monkeypatch, "show", run_id).out
    header = next(line for line in shown.splitlines() if line.startswith("record_key") and "last_outcome" in line)
    assert header.split() == [
        "record_key",
        "step",
        "item_index",
        "calls",
        "cache_hits",
        "cost_usd",
        "rounds",
        "last_outcome",
    ]
    elements = re.findall(r"^1\s+status\s+(\d)\s+2\s+0\s+\$[\d.]+\s+(\d)\s+ok$", shown, re.MULTILINE)
    assert elements == [("0", "2"), ("1", "2")], shown


def test_an_elements_tool_rounds_are_read_on_both_backends(backend):
    with Store(backend[0], schema=backend[1]) as store:
        store.start_run("run-a", "p", "p.yaml", None)
        store.add_cost(event(item_index=0, round=1, id="gen-1"))
        store.add_cost(event(item_index=0, round=2, id="gen-2", created_at="2026-11-20T10:00:01.000Z"))
        store.add_cost(event(item_index=1, round=1, id="gen-3"))
        store.add_cost(event(step="plain", item_index=0, id="gen-4"))
        store.flush()
        elements = store.run_detail("run-a")["elements"]
    assert sorted((row["step"], row["item_index"], row["calls"], row["rounds"]) for row in elements) == [
        ("classify", 0, 2, 2),
        ("classify", 1, 1, 1),
        ("plain", 0, 1, None),
    ]
