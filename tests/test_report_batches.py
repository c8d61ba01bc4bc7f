"""`pipeline report` of a `--batch-api` run: a Batch API section (batches, their bill, the normal-API
comparison), batched calls left out of latency (their latency is the batch's wait), and a code step's
`for_each` marked in the DAG like a chat step's."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3

from runner.report.svg import money

from .chromium import chromium_or_skip, open_page
from .conftest import TEST_KEY, invoke, write_pipeline

MODULE = """
def words(text: str) -> list:
    return text.split()


def upper(word: str) -> str:
    return word.upper()
"""

PIPELINE = """
name: batched-report
defaults: {model: openai/gpt-4o-mini, max_tokens: 100}
steps:
  split:
    call: h:words
    args: {text: "{{ input.text }}"}
  shout:
    call: h:upper
    for_each: "{{ steps.split.output }}"
    as: word
    args: {word: "{{ word }}"}
  answer:
    prompt: "Answer {{ input.text }}"
  note:
    batch: false
    prompt: "Note on {{ steps.answer.output }}"
output: "{{ steps.note.output }}"
"""


def test_a_batch_runs_report_shows_its_batches_and_leaves_them_out_of_latency(
    capsys, monkeypatch, tmp_path, fake_server, db_path
):
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    fake_server.fake.batches.delay_s = 0.05
    (tmp_path / "h.py").write_text(MODULE, encoding="utf-8")
    pipeline = write_pipeline(tmp_path, PIPELINE)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"text": f"two words {index}"}) + "\n" for index in range(3)))
    ran = invoke(
        capsys, monkeypatch, "run", str(pipeline), "--inputs", str(inputs),
        # the three records' requests make one batch however slowly they arrive: it is full at three
        "--batch-api", "--batch-size", "3", "--batch-linger", "5", "--batch-poll", "0.02",
    )  # fmt: skip
    assert ran.code == 0, ran.err
    with sqlite3.connect(db_path) as db:
        (run_id,) = db.execute("SELECT id FROM runs").fetchone()
        (batch_id, billed, normal) = db.execute("SELECT batch_id, billed_usd, normal_usd FROM batches").fetchone()

    page_path = tmp_path / "r.html"
    assert invoke(capsys, monkeypatch, "report", run_id, "-o", str(page_path)).code == 0
    page = page_path.read_text(encoding="utf-8")

    section = re.search(r'<section data-section="batches".*?</section>', page, re.S).group(0)
    assert f'data-batch="{batch_id}"' in section and ">completed<" in section and ">answer<" in section
    assert "3 calls went through batches" in section and "3 calls went through the normal API" in section
    assert f"discount: {money(normal)} (saved {money(normal - billed)})" in section

    latency = re.search(r'<section data-section="latency".*?</section>', page, re.S).group(0)
    assert re.findall(r'<tr data-step="([^"]+)"', latency) == ["note"]  # the batched step's wait is not a latency
    assert "3 calls made through the Batch API are left out" in latency

    nodes = dict(re.findall(r'<g class="dag-node" data-step="([^"]+)"[^>]*?( data-for-each)?>', page))
    assert nodes == {"split": "", "shout": " data-for-each", "answer": "", "note": ""}

    browser = chromium_or_skip()  # the section fits the page as the others do

    async def facts(page):
        return await page.evaluate(
            "(() => ({scroll: document.documentElement.scrollWidth, inner: window.innerWidth,"
            " shown: document.querySelector('[data-section=batches]').innerText}))()"
        )

    seen = asyncio.run(open_page(browser, page_path.as_uri(), facts))
    assert seen["scroll"] <= seen["inner"] and batch_id in seen["shown"]
