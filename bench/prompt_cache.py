"""B6: what prompt caching saves. A 3,000-token system prompt over 200 records on an Anthropic
model, against the fake (which bills cache writes and reads at the model's listed prices), run once
with `prompt_cache: auto` and once with `prompt_cache: off`; the cost ratio should come near the
provider's read discount (cache-read price / input price), raised by the completions and one write."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

MODEL = "anthropic/claude-sonnet-4.5"
RECORDS = 200
SYSTEM_TOKENS = 3000
POLICY_LINE = "Section {n}: a refund is due when the item arrives damaged, late by more than 10 days, or not at all. "


def pipeline_text(prompt_cache: str) -> str:
    # The fake counts 4 characters a token: ~12,000 characters of stable instructions.
    lines, size, number = [], 0, 1
    while size < SYSTEM_TOKENS * 4:
        line = POLICY_LINE.format(n=number)
        lines.append(line)
        size += len(line)
        number += 1
    system = "You answer customer questions from the refund policy below.\n" + "".join(lines)
    return (
        f"name: bench-prompt-cache\ndefaults:\n  model: {MODEL}\n  temperature: 0\n  reasoning: {{effort: none}}\n"
        f"  max_tokens: 100\n  prompt_cache: {prompt_cache}\nsteps:\n  answer:\n    system: {json.dumps(system)}\n"
        "    prompt: 'Customer {{ input.id }} asks: {{ input.question }}'\noutput: '{{ steps.answer.output }}'\n"
    )


def run_case(work: Path, env: dict[str, str], prompt_cache: str, records: int) -> dict[str, float]:
    folder = work / f"b6-{prompt_cache}"
    folder.mkdir(parents=True, exist_ok=True)
    pipeline = folder / "cached.yaml"
    pipeline.write_text(pipeline_text(prompt_cache), encoding="utf-8")
    inputs = folder / "in.jsonl"
    inputs.write_text(
        "".join(
            json.dumps({"id": index, "question": f"Is order {index} refundable?"}) + "\n" for index in range(records)
        )
    )
    db = folder / "ledger.db"
    command = [sys.executable, "-m", "runner", "run", str(pipeline), "--inputs", str(inputs), "--db", str(db),
               "--output", str(folder / "out.jsonl"), "--concurrency", "16"]  # fmt: skip
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"B6 ({prompt_cache}) failed:\n{completed.stderr[-3000:]}")
    with sqlite3.connect(db) as connection:
        row = connection.execute(
            "SELECT SUM(cost_usd), SUM(prompt_tokens), SUM(cached_tokens), SUM(cache_write_tokens > 0), COUNT(*)"
            " FROM cost_records"
        ).fetchone()
    cost, prompt, cached, writes, calls = row
    return {"cost": cost, "prompt": prompt, "cached": cached, "writes": writes, "calls": calls}


def prompt_cache(bench, fake_process, environment) -> None:
    """B6, recorded through `bench.record`; `fake_process` and `environment` are run.py's."""
    records = bench.scaled(RECORDS)
    prices = json.loads((Path(__file__).parent.parent / "runner" / "data" / "models.json").read_text())
    pricing = next(entry["pricing"] for entry in prices["data"] if entry["id"] == MODEL)
    discount = float(pricing["input_cache_read"]) / float(pricing["prompt"])
    results = {}
    for setting in ("off", "auto"):
        with fake_process(0) as fake:  # a fresh fake each time: an empty provider cache
            results[setting] = run_case(bench.work, environment(fake.base_url, bench.work), setting, records)
    off, auto = results["off"], results["auto"]
    ratio = auto["cost"] / off["cost"]
    label = f"{records} records, {SYSTEM_TOKENS}-token system prompt, {MODEL}"
    bench.record("B6", f"cost without caching ({label})", off["cost"], "USD", "reference", None)
    bench.record("B6", "cost with prompt_cache: auto", auto["cost"], "USD", "reference", None)
    bench.record(
        "B6", "tokens read from the cache / prompt tokens", auto["cached"] / auto["prompt"], "ratio", "info", None
    )
    bench.record(
        "B6", "calls that wrote the cache (of all calls)", auto["writes"], "calls", f"info ({auto['calls']})", None
    )
    bench.record(
        "B6", "provider's read discount (cache-read price / input price)", discount, "ratio", "reference", None
    )
    bench.record(
        "B6", "cost with caching / without", ratio, "ratio", f"near {discount:.2f} (<= {2 * discount:.2f})",
        ratio <= 2 * discount,
    )  # fmt: skip
