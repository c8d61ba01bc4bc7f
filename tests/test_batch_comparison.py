"""--batch-api's comparison with the normal API: only the batched requests, against the same requests
through the normal API at the same prompt-caching discount, and the calls that were not batched apart."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

from .conftest import TEST_KEY, cost_rows, invoke, write_pipeline
from .test_prompt_cache import POLICY

FAST = ("--batch-api", "--batch-linger", "0.05", "--batch-poll", "0.02")


def test_the_saving_is_the_batch_apis_alone_and_unbatched_calls_are_told_apart(
    capsys, monkeypatch, tmp_path, fake_server, db_path
):
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    fake_server.fake.batches.delay_s = 0.05
    pipeline = write_pipeline(
        tmp_path,
        "name: compared\ndefaults: {model: openai/gpt-4o-mini, max_tokens: 200}\nsteps:\n"
        f"  answer:\n    system: {json.dumps(POLICY)}\n    prompt: 'Customer asks: {{{{ input.q }}}}'\n"
        "  note:\n    batch: false\n    prompt: 'Note: {{ steps.answer.output }}'\n",
    )
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"q": f"question {index}"}) + "\n" for index in range(4)))
    outcome = invoke(capsys, monkeypatch, "run", str(pipeline), "--inputs", str(inputs), *FAST)
    assert outcome.code == 0, outcome.err

    rows = [row for row in cost_rows(db_path) if not row["cached"]]
    batched = [row for row in rows if row["batch_id"]]
    assert {row["step"] for row in batched} == {"answer"} and len(batched) == 4
    assert sum(row["cached_tokens"] for row in batched) > 0  # the long system message was read from the cache
    with sqlite3.connect(db_path) as db:
        ((billed, normal),) = db.execute("SELECT billed_usd, normal_usd FROM batches").fetchall()
    assert normal == pytest.approx(2 * billed, rel=1e-6)  # the fake bills batches at half the normal price

    line = next(line for line in outcome.err.splitlines() if "Batch API:" in line)
    paid = sum(row["cost_usd"] for row in batched)
    other = sum(row["cost_usd"] for row in rows if not row["batch_id"])
    assert "4 call(s) in batches cost $" + f"{paid:.6f}" in line
    assert f"prompt-caching discount: ${2 * paid:.6f} (saved ${paid:.6f})" in line
    assert f"4 call(s) not batched (normal API): ${other:.6f}" in line
    assert re.search(r"\$0\.0+ paid", line) is None
