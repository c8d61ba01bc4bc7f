"""--dry-run and tool steps: one request in the low estimate, `max_tool_rounds` requests (each with the
tool definitions in its prompt) in the high one, and the output says so."""

from __future__ import annotations

import json

import pytest

from runner import load_pipeline
from runner.chat.catalog import bundled_catalog
from runner.run.dryrun import estimate
from runner.run.inputs import InputItem

from .conftest import EXAMPLES, invoke, write_pipeline

TOOLS = '''
def get_order(order_id: str) -> dict:
    """Look an order up by its id."""
    return {"order_id": order_id}
'''

PIPELINE = """\
name: ask
input: {type: object, required: [question], properties: {question: {type: string}}}
defaults: {model: google/gemini-2.5-flash, max_tokens: 500}
steps:
  answer:
    prompt: "Customer asks: {{ input.question }}"
    tools: [shop:get_order]
    tool_choice: CHOICE
    max_tool_rounds: 4
  plain:
    prompt: "Say hello to {{ input.question }}"
"""


def rows(tmp_path, choice: str) -> tuple:
    (tmp_path / "shop.py").write_text(TOOLS, encoding="utf-8")
    pipeline = load_pipeline(write_pipeline(tmp_path, PIPELINE.replace("CHOICE", choice), f"{choice}.yaml"))
    items = [InputItem(1, {"question": "Where is ORD-1?"}), InputItem(2, {"question": "And ORD-2?"})]
    result = estimate(pipeline.spec, pipeline.renderer, bundled_catalog(), items, pipeline.check_input)
    return result, {row.step: row for row in result.rows}


def test_the_high_estimate_counts_every_tool_round_the_low_one_a_single_request(tmp_path):
    result, by_step = rows(tmp_path, "auto")
    _, unused = rows(tmp_path, "none")  # tools offered but never called: one request a call
    answer, once = by_step["answer"], unused["answer"]
    assert (answer.calls, answer.max_calls, once.max_calls) == (2, 8, 2)
    assert answer.prompt_tokens == once.prompt_tokens > by_step["plain"].prompt_tokens  # the tools are prompt
    assert answer.low_usd == pytest.approx(once.low_usd)
    assert answer.high_usd == pytest.approx(4 * once.high_usd)
    assert by_step["plain"].max_calls == by_step["plain"].calls == 2
    assert result.tool_rounds == [
        "step 'answer' may call its tools: the high estimate counts max_tool_rounds (4) requests a call, "
        "each with the tool definitions in its prompt (tool results not counted)"
    ]


def test_the_dry_run_says_how_it_counted_tool_rounds(capsys, monkeypatch):
    record = {"invoice_text": "Order ORD-1042: 2 x Desk lamp @ 24.50 = 49.00", "question": "Shipped yet?"}
    ran = invoke(
        capsys, monkeypatch, "run", str(EXAMPLES / "invoice_desk.yaml"), "--dry-run", "--input", json.dumps(record)
    )
    assert ran.code == 0, ran.err
    header = ran.out.splitlines()[0].split()
    assert header[:5] == ["step", "model", "calls", "max_calls", "prompt_tokens"]
    [answer] = [line.split() for line in ran.out.splitlines() if line.startswith("answer ")]
    assert answer[2:4] == ["1", "3"]  # max_tool_rounds: 3
    assert "3 possible call(s) (5 with every tool round)" in ran.out
    assert "step 'answer' may call its tools: the high estimate counts max_tool_rounds (3) requests" in ran.err


def test_a_pipeline_without_tools_keeps_its_dry_run_table(capsys, monkeypatch, tmp_path):
    path = write_pipeline(tmp_path, PIPELINE.split("  answer:")[0] + "  plain:\n    prompt: hi {{ input.question }}\n")
    ran = invoke(capsys, monkeypatch, "run", str(path), "--dry-run", "--input", "question=x")
    assert ran.code == 0, ran.err
    assert "max_calls" not in ran.out and "with every tool round" not in ran.out and "tools" not in ran.err
