"""The ledger against the fake's real-traffic shapes, end to end through `pipeline run` on 127.0.0.1.

test_billing.py scripts single replies with a MockTransport; here the project's fake server sends
the odd shapes (usage without cost, BYOK, empty choices, a served model with a dated id) and the
cost rows must add up to what the fake billed.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from runner.fake import FakeOpenRouter, Fault
from runner.fake.replies import DATED_IDS
from runner.fake.server import FakeServer

from .conftest import TEST_KEY, cost_rows, invoke, write_pipeline
from .test_billing import FALLBACK, LABEL, MODEL


@pytest.fixture
def server(monkeypatch):
    with FakeServer(FakeOpenRouter()) as running:
        monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
        monkeypatch.setenv("OPENROUTER_BASE_URL", running.base_url)
        yield running


def run_label(capsys, monkeypatch, tmp_path, records: int, *extra: str):
    pipeline = write_pipeline(tmp_path, LABEL)
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"text": f"ticket {n}"}) + "\n" for n in range(records)), encoding="utf-8")
    return invoke(
        capsys, monkeypatch, "run", str(pipeline), "--inputs", str(data), "--output", str(tmp_path / "o"), *extra
    )


def test_costs_missing_from_replies_are_looked_up_and_add_up_to_what_the_fake_billed(
    capsys, monkeypatch, tmp_path, server, db_path
):
    server.fake.enqueue(Fault("no_cost", times=100))  # the fake's /generation is "not found" on each first lookup
    outcome = run_label(capsys, monkeypatch, tmp_path, 3)
    assert outcome.code == 0, outcome.err
    rows = cost_rows(db_path)
    assert len(rows) == 3
    assert {row["cost_source"] for row in rows} == {"generation"}
    assert all(row["cost_usd"] > 0 for row in rows)
    assert sum(row["cost_usd"] for row in rows) == pytest.approx(server.fake.total_cost)
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == 3


def test_a_cost_cap_holds_when_replies_carry_no_cost(capsys, monkeypatch, tmp_path, server, db_path):
    server.fake.enqueue(Fault("no_cost", times=1000))
    one_call = 0.00004  # about what one label call costs on the fake's prices
    outcome = run_label(capsys, monkeypatch, tmp_path, 40, "--max-cost", str(one_call * 5), "--concurrency", "2")
    assert outcome.code == 3, outcome.err
    assert server.fake.billed_calls < 40
    assert server.fake.total_cost <= one_call * 5
    assert sum(row["cost_usd"] for row in cost_rows(db_path)) == pytest.approx(server.fake.total_cost)


def test_byok_replies_record_the_fee_and_the_providers_price(capsys, monkeypatch, tmp_path, server, db_path):
    server.fake.enqueue(Fault("byok", times=10))
    outcome = run_label(capsys, monkeypatch, tmp_path, 2)
    assert outcome.code == 0, outcome.err
    rows = cost_rows(db_path)
    assert [row["is_byok"] for row in rows] == [1, 1]
    for row in rows:
        assert 0 < row["cost_usd"] < row["upstream_cost_usd"]  # OpenRouter's fee, below the provider's price
    costs = invoke(capsys, monkeypatch, "costs", "--upstream", "--format", "json")
    [total] = json.loads(costs.out)
    assert total["byok_upstream_usd"] == pytest.approx(sum(row["upstream_cost_usd"] for row in rows))


def test_empty_choices_fall_back_to_the_next_model_without_a_re_ask(capsys, monkeypatch, tmp_path, server, db_path):
    server.fake.enqueue(Fault("empty_choices", model=MODEL))
    outcome = run_label(capsys, monkeypatch, tmp_path, 1)
    assert outcome.code == 0, outcome.err
    rows = cost_rows(db_path)
    assert [(row["requested_model"], row["outcome"]) for row in rows] == [(MODEL, "error"), (FALLBACK, "ok")]
    assert len(server.fake.chat_bodies()) == 2
    assert all(message["role"] != "assistant" for body in server.fake.chat_bodies() for message in body["messages"])


def test_a_served_model_with_a_dated_id_is_recorded_beside_the_requested_one(
    capsys, monkeypatch, tmp_path, server, db_path
):
    model = "anthropic/claude-sonnet-4.5"
    pipeline = LABEL.replace(f"model: {MODEL}", f"model: {model}")
    (tmp_path / "sub").mkdir()
    path = write_pipeline(tmp_path / "sub", pipeline)
    server.fake.enqueue(Fault("served_model", model=model))
    outcome = invoke(capsys, monkeypatch, "run", str(path), "--input", '{"text": "x"}')
    assert outcome.code == 0, outcome.err
    [row] = cost_rows(db_path)
    assert (row["requested_model"], row["model"]) == (model, DATED_IDS[model])
    assert row["native_finish_reason"] == "end_turn"
