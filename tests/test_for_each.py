"""`for_each` (DESIGN §7): a map step runs once per element, concurrently, its output the elements'
outputs in input order; skip vs fail, lists that are not lists or too long, `when` once for the
step, per-element cost rows and cache entries, resume, budget, the dry run, the static field check,
the graph and the reports."""

from __future__ import annotations

import asyncio
import json
import pickle
import re
from dataclasses import replace

import pytest

from runner import load_pipeline
from runner.errors import SpecError
from runner.fake import Fault
from runner.fake.server import mock_transport
from runner.report.diagram import dot, mermaid
from runner.run.hooks import Hooks
from runner.run.steps import register, unregister
from runner.settings import RunOptions
from runner.store import Store

from .conftest import TEST_KEY, cost_rows, invoke, write_pipeline
from .test_kinds import UPPER, UpperRunner, UpperStep
from .test_store import event

VERDICT = "{type: object, additionalProperties: false, required: [ok], properties: {ok: {type: boolean}}}"

CHECK = """\
name: check-lines
input:
  type: object
  required: [lines]
  properties:
    lines: {type: array, items: {type: string}}
    go: {type: boolean}
defaults: {model: google/gemini-2.5-flash-lite, retries: 0}
steps:
  check:
    for_each: "{{ input.lines }}"
    as: line
    prompt: "Is line {{ item_index }} plausible: {{ line }}"
  verdict:
    prompt: "Lines checked: {{ steps.check.output | length }}"
output:
  checked: "{{ steps.check.output }}"
"""

RUN_ID = re.compile(r"run (run-\w+):")


def run(tmp_path, settings, fake, record, text: str = CHECK):
    pipeline = load_pipeline(write_pipeline(tmp_path, text))
    return asyncio.run(pipeline.run(record, settings=settings, transport=mock_transport(fake)))


def go_live(monkeypatch, server) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", server.base_url)


# --- running ---------------------------------------------------------------------------------------------------------


def test_elements_run_concurrently_and_the_output_keeps_input_order(tmp_path, settings, fake):
    fake.enqueue(Fault("hang", delay_s=0.3))  # the first request to arrive answers last
    lines = ["alpha", "bravo", "charlie", "delta"]
    result = run(tmp_path, settings, fake, {"lines": lines})
    assert result.status == "ok", result.error
    checked = result.steps["check"].output
    assert [text.split(": ")[-1] for text in checked] == lines
    assert [re.search(r"line (\d)", text)[1] for text in checked] == ["0", "1", "2", "3"]
    assert fake.max_in_flight >= 2  # the elements were in flight together
    assert result.output == {"checked": checked}


def test_an_empty_list_gives_an_empty_output_and_no_calls(tmp_path, settings, fake):
    result = run(tmp_path, settings, fake, {"lines": []})
    assert result.status == "ok" and result.steps["check"].output == []
    assert fake.chat_requests == 1  # only the step after it


def test_one_failed_element_fails_the_step_by_default(tmp_path, settings, fake):
    fake.enqueue(Fault("status", status=400, message="bad parameter"))
    result = run(tmp_path, settings, fake, {"lines": ["a", "b", "c"]})
    assert result.status == "failed"
    assert result.error.step == "check" and result.error.kind == "rejected"
    assert re.match(r"element \d of 3 failed", result.error.message)
    assert "verdict" not in result.steps  # a failed step stops its dependents
    assert result.steps["check"].attempts == result.error.attempts == 2  # the other elements' billed replies


def test_skip_makes_a_failed_element_null_and_the_step_goes_on(tmp_path, settings, fake):
    text = CHECK.replace("    as: line\n", "    as: line\n    on_item_error: skip\n")
    fake.enqueue(Fault("status", status=400, message="bad parameter"))
    result = run(tmp_path, settings, fake, {"lines": ["a", "b", "c"]}, text)
    assert result.status == "ok", result.error
    checked = result.steps["check"].output
    assert len(checked) == 3 and checked.count(None) == 1
    assert all(text.endswith((": a", ": b", ": c")) for text in checked if text is not None)
    assert result.steps["verdict"].status == "ok"


def test_a_for_each_that_is_not_a_list_fails_the_record_naming_the_step_and_the_type(tmp_path, settings, fake):
    text = CHECK.replace("{{ input.lines }}", "{{ input.lines | join(', ') }}")
    result = run(tmp_path, settings, fake, {"lines": ["a", "b"]}, text)
    assert result.status == "failed" and result.error.step == "check"
    assert result.error.kind == "render_error"
    assert "step 'check': `for_each` gave string, not a list" in result.error.message
    assert fake.chat_requests == 0


def test_a_list_longer_than_max_items_fails_before_any_call(tmp_path, settings, fake):
    text = CHECK.replace("    as: line\n", "    as: line\n    max_items: 2\n")
    result = run(tmp_path, settings, fake, {"lines": ["a", "b", "c"]}, text)
    assert result.status == "failed" and result.error.kind == "too_many_items"
    assert "step 'check'" in result.error.message and "3 elements" in result.error.message
    assert "max_items 2" in result.error.message
    assert fake.chat_requests == 0


def test_when_decides_once_for_the_whole_step(tmp_path, settings, fake):
    text = CHECK.replace("    as: line\n", "    as: line\n    when: input.go\n")
    skipped = run(tmp_path, settings, fake, {"lines": ["a", "b"], "go": False}, text)
    assert skipped.steps["check"].status == "skipped" and fake.chat_requests == 0
    ran = run(tmp_path, settings, fake, {"lines": ["a", "b"], "go": True}, text)
    assert ran.status == "ok" and len(ran.steps["check"].output) == 2
    assert fake.chat_requests == 3


def test_a_map_step_over_an_earlier_steps_list_reads_one_element_property(tmp_path, settings, fake):
    text = f"""\
name: items
input: {{type: object, required: [text], properties: {{text: {{type: string}}}}}}
defaults: {{model: google/gemini-2.5-flash-lite}}
steps:
  extract:
    prompt: "Line items of {{{{ input.text }}}}"
    schema:
      type: object
      additionalProperties: false
      required: [items]
      properties:
        items: {{type: array, minItems: 3, maxItems: 3, items: {{type: string}}}}
  check:
    for_each: steps.extract.output['items']
    prompt: "Is {{{{ item }}}} plausible?"
    schema: {VERDICT}
output:
  first_ok: "{{{{ steps.check.output[0].ok }}}}"
  all: "{{{{ steps.check.output }}}}"
"""
    result = run(tmp_path, settings, fake, {"text": "an invoice"}, text)
    assert result.status == "ok", result.error
    assert len(result.output["all"]) == 3 and result.output["first_ok"] == result.output["all"][0]["ok"]
    assert fake.chat_requests == 4


def test_a_step_of_any_kind_can_map(tmp_path, settings, fake):
    register(UPPER, UpperRunner)
    try:
        text = 'name: shout\nsteps:\n  shout:\n    for_each: input.words\n    upper: "{{ item_index }}: {{ item }}"\n'
        result = run(tmp_path, settings, fake, {"words": ["one", "two"]}, text)
    finally:
        unregister("upper")
    assert result.status == "ok" and result.output == {"shout": ["0: ONE", "1: TWO"]}


def test_a_kind_whose_builder_leaves_for_each_out_is_a_load_error_not_a_silent_single_run(tmp_path):
    careless = replace(UPPER, build=lambda step: UpperStep(id=step.id, line=step.line, text=step.template("upper")))
    register(careless, UpperRunner)
    try:
        text = 'name: shout\nsteps:\n  shout:\n    for_each: input.words\n    upper: "{{ item }}"\n'
        with pytest.raises(SpecError, match="steps of kind 'upper' do not take `for_each` yet"):
            load_pipeline(write_pipeline(tmp_path, text))
    finally:
        unregister("upper")


# --- costs, cache, resume, budget ------------------------------------------------------------------------------------


def test_each_element_is_a_cost_row_with_its_item_index_adding_up_to_what_was_billed(
    capsys, monkeypatch, tmp_path, fake_server, db_path
):
    go_live(monkeypatch, fake_server)
    path = str(write_pipeline(tmp_path, CHECK))
    ran = invoke(capsys, monkeypatch, "run", path, "--input", '{"lines": ["a", "b", "c"]}')
    assert ran.code == 0, ran.err
    rows = cost_rows(db_path)
    assert sorted((row["step"], row["item_index"]) for row in rows) == [
        ("check", 0), ("check", 1), ("check", 2), ("verdict", None)
    ]  # fmt: skip
    assert sum(row["cost_usd"] for row in rows) == pytest.approx(fake_server.fake.total_cost, abs=1e-12)
    by_item = json.loads(invoke(capsys, monkeypatch, "costs", "--by", "step,item", "--format", "json").out)
    assert sorted((row["step"], row["item"], row["calls"]) for row in by_item if row["step"] == "check") == [
        ("check", 0, 1), ("check", 1, 1), ("check", 2, 1)
    ]  # fmt: skip
    run_id = RUN_ID.search(ran.err)[1]
    shown = invoke(capsys, monkeypatch, "show", run_id)
    assert re.search(r"^1\s+check\s+2\s+1\s+0\s+\$[\d.]+\s+ok$", shown.out, re.MULTILINE), shown.out
    detail = json.loads(invoke(capsys, monkeypatch, "show", run_id, "--format", "json").out)
    assert [row["item_index"] for row in detail["elements"]] == [0, 1, 2]


def test_each_element_is_cached_on_its_own(capsys, monkeypatch, tmp_path, fake_server, db_path):
    go_live(monkeypatch, fake_server)
    path = str(write_pipeline(tmp_path, CHECK))
    first = invoke(capsys, monkeypatch, "run", path, "--input", '{"lines": ["a", "b"]}')
    assert first.code == 0 and "3 billed, 0 from cache" in first.err
    # One element more: the two known ones come from the cache, the new one is asked.
    again = invoke(capsys, monkeypatch, "run", path, "--input", '{"lines": ["a", "b", "c"]}')
    assert again.code == 0, again.err
    assert "2 billed, 2 from cache" in again.err  # element c, and `verdict` (its prompt counts 3 now)
    cached = [row for row in cost_rows(db_path) if row["cached"]]
    assert sorted(row["item_index"] for row in cached) == [0, 1]


def test_a_run_stopped_at_an_element_resumes_without_paying_for_the_finished_ones(
    capsys, monkeypatch, tmp_path, fake_server, db_path
):
    go_live(monkeypatch, fake_server)
    path = str(write_pipeline(tmp_path, CHECK))
    fake_server.fake.enqueue(Fault("served_model"))  # element 0 answers
    fake_server.fake.enqueue(Fault("status", status=402))  # element 1: out of credits, the run stops
    args = ("run", path, "--input", '{"lines": ["a", "b", "c"]}', "--concurrency", "1")
    stopped = invoke(capsys, monkeypatch, *args)
    assert stopped.code == 3 and "insufficient credits" in stopped.err, stopped.err
    run_id = RUN_ID.search(stopped.err)[1]
    assert [row["item_index"] for row in cost_rows(db_path)] == [0]
    resumed = invoke(capsys, monkeypatch, *args, "--resume", run_id)
    assert resumed.code == 0, resumed.err
    assert "3 billed, 1 from cache" in resumed.err  # elements 1 and 2, and `verdict`
    output = json.loads(resumed.out)
    assert [text.split(": ")[-1] for text in output["checked"]] == ["a", "b", "c"]


def test_retry_failed_runs_a_record_whose_element_failed_again(capsys, monkeypatch, tmp_path, fake_server):
    go_live(monkeypatch, fake_server)
    path = str(write_pipeline(tmp_path, CHECK))
    fake_server.fake.enqueue(Fault("status", status=400, message="bad parameter"))
    args = ("run", path, "--input", '{"lines": ["a", "b"]}')
    failed = invoke(capsys, monkeypatch, *args)
    assert failed.code == 1 and re.search(r"element \d of 2 failed: rejected", failed.out), failed.out
    run_id = RUN_ID.search(failed.err)[1]
    retried = invoke(capsys, monkeypatch, *args, "--resume", run_id, "--retry-failed")
    assert retried.code == 0, retried.err
    assert len(json.loads(retried.out)["checked"]) == 2


def test_retry_failed_asks_again_only_for_the_element_that_failed(capsys, monkeypatch, tmp_path, fake_server):
    # Four of five elements were answered (and paid) before the record failed on the fifth, which no provider
    # could answer: running the record again serves those four from the cache and pays for the failed one and
    # the step after the map.
    go_live(monkeypatch, fake_server)
    path = str(write_pipeline(tmp_path, CHECK))
    fake_server.fake.enqueue(Fault("status", status=503, message="overloaded"))
    args = ("run", path, "--input", json.dumps({"lines": ["a", "b", "c", "d", "e"]}))
    failed = invoke(capsys, monkeypatch, *args)
    assert failed.code == 1 and "of 5 failed: unavailable" in failed.out, failed.out
    run_id = RUN_ID.search(failed.err)[1]
    billed = fake_server.fake.billed_calls

    retried = invoke(capsys, monkeypatch, *args, "--resume", run_id, "--retry-failed")
    assert retried.code == 0, retried.err
    assert "calls: 2 billed, 4 from cache" in retried.err
    assert fake_server.fake.billed_calls == billed + 2
    assert len(json.loads(retried.out)["checked"]) == 5


def test_the_budget_reserves_each_elements_request(capsys, monkeypatch, tmp_path, fake_server, db_path):
    go_live(monkeypatch, fake_server)
    path = str(write_pipeline(tmp_path, CHECK.replace("retries: 0", "retries: 0, max_tokens: 1000")))
    # gemini-2.5-flash-lite: $0.4 per million completion tokens, so 1000 max_tokens are about $0.0004 a request.
    lines = json.dumps({"lines": [f"line {index}" for index in range(10)]})
    stopped = invoke(capsys, monkeypatch, "run", path, "--input", lines, "--max-cost", "0.0005")
    # Each element reserves its worst case: once the spend leaves no room for one more, the run stops.
    assert stopped.code == 3 and "--max-cost $0.0005 reached" in stopped.err, stopped.err
    assert 0 < len(cost_rows(db_path)) < 10
    assert sum(row["cost_usd"] for row in cost_rows(db_path)) <= 0.0005


# --- dry run, static check, graph ------------------------------------------------------------------------------------


def test_the_dry_run_counts_elements_and_says_what_it_assumed(capsys, monkeypatch, tmp_path):
    from_input = invoke(
        capsys, monkeypatch, "run", str(write_pipeline(tmp_path, CHECK)), "--dry-run", "--input",
        '{"lines": ["a", "b", "c"]}',
    )  # fmt: skip
    assert from_input.code == 0, from_input.err
    assert re.search(r"^check\s+google/gemini-2.5-flash-lite\s+3\s", from_input.out, re.MULTILINE)
    assert "assumed" not in from_input.err  # the list's length is known
    text = CHECK.replace("{{ input.lines }}", "{{ steps.split.output['parts'] }}").replace(
        "steps:\n",
        'steps:\n  split:\n    prompt: "Split {{ input.lines }}"\n    schema: {type: object, additionalProperties: false,'
        " required: [parts], properties: {parts: {type: array, minItems: 2, items: {type: string}}}}\n",
    )
    from_step = invoke(
        capsys, monkeypatch, "run", str(write_pipeline(tmp_path, text, "q.yaml")), "--dry-run", "--input",
        '{"lines": ["a"]}',
    )  # fmt: skip
    assert from_step.code == 0, from_step.err
    assert re.search(r"^check\s+google/gemini-2.5-flash-lite\s+2\s", from_step.out, re.MULTILINE)
    assert (
        "step 'check': its for_each list comes from an earlier step, which a dry run does not run; "
        "assumed 2 element(s) a record (the stand-in's list; max_items 100)"
    ) in from_step.err


def test_a_property_is_read_from_one_element_of_a_map_steps_output(tmp_path):
    ok = CHECK.replace(
        '    prompt: "Is line {{ item_index }} plausible: {{ line }}"\n',
        f'    prompt: "Is line {{{{ item_index }}}} plausible: {{{{ line }}}}"\n    schema: {VERDICT}\n',
    )
    first = ok.replace("{{ steps.check.output | length }}", "{{ steps.check.output[0].ok }}")
    assert load_pipeline(write_pipeline(tmp_path, first)).graph.parents["verdict"] == ("check",)
    on_the_list = ok.replace("{{ steps.check.output | length }}", "{{ steps.check.output.ok }}")
    with pytest.raises(SpecError) as caught:
        load_pipeline(write_pipeline(tmp_path, on_the_list))
    message = str(caught.value)
    assert "`steps.check.output.ok`: step 'check' runs for_each, so its output is a list" in message
    assert "write `steps.check.output[0].ok`" in message and "{% for element in steps.check.output %}" in message
    typo = ok.replace("{{ steps.check.output | length }}", "{{ steps.check.output[0].okay }}")
    with pytest.raises(SpecError, match="has no property 'okay'; did you mean 'ok'"):
        load_pipeline(write_pipeline(tmp_path, typo))


def test_the_graph_marks_a_map_step(tmp_path):
    pipeline = load_pipeline(write_pipeline(tmp_path, CHECK))
    assert "check<br/><small>check-lines · google/gemini-2.5-flash-lite · for_each: line</small>" in mermaid(
        pipeline.spec, pipeline.graph
    )
    assert "for_each: line" in dot(pipeline.spec, pipeline.graph)
    assert "for_each" not in mermaid(pipeline.spec, pipeline.graph).split("verdict[")[1]


def test_show_and_costs_read_elements_the_same_on_either_backend(backend):
    with Store(backend[0], schema=backend[1]) as store:
        store.start_run("run-a", "p", "p.yaml", None)
        store.add_cost(event(item_index=0, id="gen-1"))
        store.add_cost(event(item_index=1, id="gen-2", outcome="invalid_json"))
        # The element's second reply, served from the cache afterwards: its outcome is the element's last.
        store.add_cost(event(item_index=1, id="cached-gen-3", cached=True, created_at="2026-11-20T10:00:01.000Z"))
        store.flush()
        elements = store.run_detail("run-a")["elements"]
        by_item = store.cost_summary(("item",), run_id="run-a")
    assert [(row["item_index"], row["calls"], row["cache_hits"], row["last_outcome"]) for row in elements] == [
        (0, 1, 0, "ok"), (1, 1, 1, "ok")
    ]  # fmt: skip
    assert sorted((row["item"], row["calls"]) for row in by_item) == [(0, 1), (1, 2)]


def test_a_map_step_pickles_with_its_for_each(tmp_path):
    text = CHECK.replace("    as: line\n", "    as: line\n    max_items: 7\n    on_item_error: skip\n")
    spec = load_pipeline(write_pipeline(tmp_path, text)).spec
    copied = pickle.loads(pickle.dumps(spec)).step("check").for_each
    assert (copied.name, copied.max_items, copied.on_item_error) == ("line", 7, "skip")
    assert copied.items.source == "{{ input.lines }}" and copied.items.field == "for_each"


def test_validate_finds_nothing_wrong_with_a_map_step(capsys, monkeypatch, tmp_path):
    checked = invoke(capsys, monkeypatch, "validate", str(write_pipeline(tmp_path, CHECK)))
    assert checked.code == 0 and "0 error(s)" in checked.out + checked.err
    assert "step 'check'" not in checked.out + checked.err  # (`verdict` reaching nothing is this file's own)


def test_a_map_over_many_records_starts_a_record_only_when_the_line_has_room(settings, fake, tmp_path):
    # 20 elements a record, 4 requests in flight: the window (8 records) would put 160 requests in line at
    # once, and the loop would spend a burst setting them all up while replies wait to be read. Records start
    # only while fewer than a cap's worth of requests wait, so two or three records are in flight at a time.
    pipeline = load_pipeline(write_pipeline(tmp_path, CHECK))
    records = [{"lines": [f"r{number} line {index}" for index in range(20)]} for number in range(12)]

    class Watch(Hooks):
        running = most = 0

        def on_record_start(self, record_key):
            self.running += 1
            self.most = max(self.most, self.running)

        def on_record_end(self, result):
            self.running -= 1

    watch = Watch()

    async def collect():
        options = RunOptions(concurrency=4)
        async with pipeline.session(settings, transport=mock_transport(fake), options=options, hooks=watch) as session:
            return [result async for result in session.run_many(records)], session.gate.max_in_flight

    fake.latency_s = 0.002
    results, most_in_flight = asyncio.run(collect())
    assert len(results) == 12 and all(result.status == "ok" for result in results)
    assert [len(result.output["checked"]) for result in results] == [20] * 12
    assert most_in_flight == 4  # the cap was still kept full
    assert watch.most <= 3, watch.most
