"""`pipeline report RUN_ID -o report.html`: one self-contained page, rendered in a real headless Chromium
and checked against the database and `pipeline costs`."""

import asyncio
import json
import os
import re
import shutil
import sqlite3
import struct

import pytest

from runner.fake import Fault
from runner.report.dag import NODE_H, NODE_W, dag_svg, layers
from runner.report.html import render_report
from runner.report.runreport import DagStep, Share, build_report, percentile
from runner.report.svg import money

from .chromium import chromium_or_skip, open_page
from .conftest import TEST_KEY, invoke, write_pipeline

PIPELINE = """
name: report-demo
input: {type: object, required: [text], properties: {text: {type: string}}}
defaults: {model: google/gemini-2.5-flash-lite, max_tokens: 300, module: intake}
steps:
  classify:
    prompt: "Classify this ticket: {{ input.text }}"
    schema:
      type: object
      additionalProperties: false
      required: [label]
      properties: {label: {type: string, enum: [billing, bug, other]}}
  extract:
    prompt: "List the facts in: {{ input.text }}"
  draft:
    module: drafting
    model: anthropic/claude-haiku-4.5
    prompt: "Answer a {{ steps.classify.output.label }} ticket using {{ steps.extract.output }}"
  review:
    module: quality
    model: openai/gpt-4o-mini
    prompt: "Review this answer: {{ steps.draft.output }}"
output: "{{ steps.review.output }}"
"""
STEPS = {"classify", "extract", "draft", "review"}
SECRET_PROMPT = "PROMPT-TEXT-MUST-NOT-LEAK"


@pytest.fixture
def finished_run(capsys, monkeypatch, tmp_path, db_path, fake_server):
    """A live-mode run against the fake: six records, a moderation failure, a provider fallback, generations."""
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    fake_server.fake.enqueue(Fault("moderation", model="openai/gpt-4o-mini", reasons=("harassment",)))
    fake_server.fake.enqueue(Fault("provider_fallback", model="anthropic/claude-haiku-4.5", times=2))
    pipeline = write_pipeline(tmp_path, PIPELINE)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(
        "".join(
            json.dumps({"text": f"{SECRET_PROMPT} ticket {index}: I was charged twice"}) + "\n" for index in range(6)
        )
    )
    result = invoke(
        capsys, monkeypatch, "run", str(pipeline), "--inputs", str(inputs), "--user", "alice", "--fetch-generations"
    )
    assert result.code == 1, result.err  # the moderated record failed, the others are kept
    with sqlite3.connect(db_path) as db:
        (run_id,) = db.execute("SELECT id FROM runs").fetchone()
    return run_id


def db_total(db_path, run_id: str) -> float:
    with sqlite3.connect(db_path) as db:
        return float(db.execute("SELECT SUM(cost_usd) FROM cost_records WHERE run_id = ?", (run_id,)).fetchone()[0])


PAGE_FACTS = """(() => {
  const box = (element) => { const r = element.getBoundingClientRect(); return {x: r.x, y: r.y, w: r.width, h: r.height}; };
  const rows = (selector) => [...document.querySelectorAll(selector)];
  return {
    total: parseFloat(document.querySelector('main').dataset.totalUsd),
    kpis: Object.fromEntries(rows('.kpi').map(k => [k.dataset.kpi, k.querySelector('b').textContent])),
    nodes: rows('svg.dag g.dag-node').map(g => ({step: g.dataset.step, cost: parseFloat(g.dataset.costUsd), ...box(g)})),
    dag: box(document.querySelector('svg.dag')),
    edges: rows('svg.dag path.dag-edge').map(p => [p.dataset.from, p.dataset.to]),
    bars: Object.fromEntries(rows('svg[data-chart="by-step"] g.bar').map(b => [b.dataset.label, parseFloat(b.dataset.value)])),
    charts: rows('section[data-section] svg').map(s => ({chart: s.dataset.chart, ...box(s)})),
    latency: rows('g.latency-row').map(g => g.dataset.step),
    failures: rows('[data-section="failures"] tr[data-kind]').map(tr => tr.innerText),
    text: document.body.innerText,
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
  };
})()"""


def test_the_report_renders_in_chromium_with_the_databases_totals(capsys, monkeypatch, tmp_path, db_path, finished_run):
    browser = chromium_or_skip()
    report = tmp_path / "report.html"
    written = invoke(capsys, monkeypatch, "report", finished_run, "-o", str(report))
    assert written.code == 0, written.err
    screenshot = tmp_path / "report.png"

    async def check(page):
        facts = await page.evaluate(PAGE_FACTS)
        return facts, await page.screenshot(screenshot), list(page.requests)

    facts, png, requests = asyncio.run(open_page(browser, report.as_uri(), check))

    total = db_total(db_path, finished_run)
    costs = json.loads(
        invoke(capsys, monkeypatch, "costs", "--run", finished_run, "--by", "step", "--format", "json").out
    )
    assert facts["total"] == pytest.approx(total, abs=1e-9)
    assert sum(row["cost_usd"] for row in costs) == pytest.approx(total, abs=1e-9)
    assert facts["kpis"]["total-usd"] == money(total)
    # A node per step, each drawn, none on top of another, inside the DAG; an edge per reference.
    assert {node["step"] for node in facts["nodes"]} == STEPS and len(facts["nodes"]) == len(STEPS)
    for node in facts["nodes"]:
        assert node["w"] > 100 and node["h"] > 40
        assert facts["dag"]["x"] <= node["x"] and node["x"] + node["w"] <= facts["dag"]["x"] + facts["dag"]["w"] + 1
    for first in facts["nodes"]:
        for second in facts["nodes"]:
            if first is not second:
                apart = (
                    first["x"] + first["w"] <= second["x"]
                    or second["x"] + second["w"] <= first["x"]
                    or first["y"] + first["h"] <= second["y"]
                    or second["y"] + second["h"] <= first["y"]
                )
                assert apart, (first, second)
    assert sorted(map(tuple, facts["edges"])) == [("classify", "draft"), ("draft", "review"), ("extract", "draft")]
    # Each step's spend: the DAG's cards and the bars say what `pipeline costs --by step` says.
    by_step = {row["step"]: row["cost_usd"] for row in costs}
    assert {node["step"]: node["cost"] for node in facts["nodes"]} == pytest.approx(by_step, abs=1e-9)
    assert facts["bars"] == pytest.approx(by_step, abs=1e-9)
    assert set(facts["latency"]) == STEPS
    # Failures by kind with the runner's summary; the provider's text (it quotes the prompt) never.
    assert [line.split("\t")[:3] for line in facts["failures"]] == [["rejected", "1", "review"]]
    assert SECRET_PROMPT not in facts["text"] and SECRET_PROMPT not in report.read_text()
    assert "Amazon Bedrock" in facts["text"]  # the providers tried, from the generation records
    # It looks right: every chart has room, nothing spills sideways, nothing was fetched.
    assert all(chart["w"] > 250 and chart["h"] > 30 for chart in facts["charts"]), facts["charts"]
    assert facts["scrollWidth"] <= facts["innerWidth"]
    assert requests == [report.as_uri()]
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width == 1280 and height > 1200
    if os.environ.get("PIPELINE_REPORT_SCREENSHOT"):  # how docs/report.png is made
        shutil.copyfile(screenshot, os.environ["PIPELINE_REPORT_SCREENSHOT"])


def test_the_report_is_one_file_that_fetches_nothing(capsys, monkeypatch, tmp_path, finished_run):
    report = tmp_path / "report.html"
    assert invoke(capsys, monkeypatch, "report", finished_run, "-o", str(report)).code == 0
    page = report.read_text()
    for outside in ("<script", "<link", "<img", "src=", "@import", "url(http", "https://"):
        assert outside not in page
    assert "default-src 'none'" in page  # and the browser is told to fetch nothing else


def test_report_errors_name_the_run_and_the_file(capsys, monkeypatch, tmp_path, finished_run):
    unknown = invoke(capsys, monkeypatch, "report", "run-nope", "-o", str(tmp_path / "r.html"))
    assert unknown.code == 2 and "no run 'run-nope'" in unknown.err
    folder = invoke(capsys, monkeypatch, "report", finished_run, "-o", str(tmp_path / "missing" / "r.html"))
    assert folder.code == 2 and "does not exist" in folder.err


def test_without_the_pipeline_file_the_steps_are_still_shown(capsys, monkeypatch, tmp_path, finished_run):
    (tmp_path / "p.yaml").unlink()
    report = tmp_path / "report.html"
    result = invoke(capsys, monkeypatch, "report", finished_run, "-o", str(report))
    assert result.code == 0 and "without edges" in result.err
    page = report.read_text()
    assert all(f'data-step="{step}"' in page for step in STEPS) and "dag-edge" not in page


def row(step, cost, *, record="1", item=None, latency=100, created="2026-01-01T00:00:01.000Z", cached=0):
    return {
        "step": step,
        "module": "m",
        "model": "x/y",
        "user_id": None,
        "cost_usd": cost,
        "cached": cached,
        "latency_ms": latency,
        "record_key": record,
        "item_index": item,
        "created_at": created,
        "prompt_tokens": 1,
        "completion_tokens": 1,
        "outcome": "ok",
    }


def test_for_each_steps_show_their_spread_over_elements():
    calls = [
        row("each", 0.01, record="1", item=0),
        row("each", 0.02, record="1", item=1),
        row("each", 0.03, record="1", item=2),
        row("each", 0.05, record="2", item=0),
        row("plain", 0.5, record="1"),
    ]
    run = {"id": "r", "pipeline": "p", "started_at": "2026-01-01T00:00:00.000Z", "finished_at": None}
    built = build_report(run, [], calls, None)
    (spread,) = built.spreads
    assert spread.step == "each" and spread.elements == 4 and spread.records == 2 and spread.most_elements == 3
    assert [index for index, _ in spread.by_index] == [0, 1, 2]
    assert [cost for _, cost in spread.by_index] == pytest.approx([0.06, 0.02, 0.03])
    assert spread.per_element_max == 0.05
    assert built.timeline[-1] == (1.0, pytest.approx(0.61))
    page = render_report(built)
    assert 'data-section="for-each"' in page and page.count('class="column"') == 3


def test_a_fan_out_is_drawn_left_to_right_and_a_chain_top_to_bottom():
    fan = [
        DagStep("load"),
        *(DagStep(f"check_{index}", ("load",)) for index in range(6)),
        DagStep("merge", ("check_0",)),
    ]
    assert layers(fan) == [["load"], [f"check_{index}" for index in range(6)], ["merge"]]
    chain = [DagStep("a"), DagStep("b", ("a",)), DagStep("c", ("b",))]

    def size(steps):
        width, height = re.search(
            r'viewBox="0 0 (\d+) (\d+)"', dag_svg(steps, lambda step: Share(step, 0, 0, 0))
        ).groups()
        return int(width), int(height)

    assert size(fan)[0] < 4 * NODE_W and size(fan)[1] > 6 * NODE_H  # the checks stacked, the layers side by side
    assert size(chain)[0] < 2 * NODE_W and size(chain)[1] > 3 * NODE_H  # one above the other


def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))
    assert (percentile(values, 0.5), percentile(values, 0.9), percentile(values, 0.99)) == (50, 90, 99)
    assert percentile([7], 0.99) == 7 and percentile([], 0.5) == 0
