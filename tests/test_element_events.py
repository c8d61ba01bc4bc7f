"""A `for_each` element's events say which element they are, and a tool round's which round: in the
JSON log events, and in `--stream`, where each element's text is its own line."""

from __future__ import annotations

import asyncio
import json

from runner import TextDelta, load_pipeline
from runner.fake import FakeOpenRouter
from runner.fake.server import mock_transport
from runner.run.hooks import Hooks, fan_out, place

from .conftest import TEST_KEY, invoke, write_pipeline

MODULE = '''
def lookup(word: str) -> str:
    """Look a word up."""
    return word
'''

TOOL_MAP = """
name: rounds
defaults:
  model: anthropic/claude-sonnet-4.5
steps:
  look:
    for_each: "{{ input.words }}"
    as: word
    prompt: "Look {{ word }} up"
    tools: [h:lookup]
output: "{{ steps.look.output }}"
"""

SAY = """
name: say
defaults:
  model: google/gemini-2.5-flash-lite
steps:
  say:
    for_each: "{{ input.words }}"
    as: word
    prompt: "Say {{ word }}"
output: "{{ steps.say.output }}"
"""


def test_json_log_events_name_the_element_and_the_round(tmp_path, capsys, monkeypatch):
    (tmp_path / "h.py").write_text(MODULE, encoding="utf-8")
    path = write_pipeline(tmp_path, TOOL_MAP)
    outcome = invoke(
        capsys, monkeypatch, "-vv", "--log-format", "json", "run", str(path), "--mock",
        "--db", str(tmp_path / "p.db"), "--input", '{"words": ["x", "y"]}',
    )  # fmt: skip
    assert outcome.code == 0, outcome.err
    entries = [json.loads(line) for line in outcome.err.splitlines() if line.strip()]
    mine = [entry for entry in entries if entry.get("logger") == "runner.run.eventlog"]
    expected = [(0, 1), (0, 2), (1, 1), (1, 2)]  # each element: a round calling the tool, then the answer
    for event in ("call_start", "call_end", "reply"):
        found = sorted((entry["item_index"], entry["round"]) for entry in mine if entry["event"] == event)
        assert found == expected, event
    starts = [entry["message"] for entry in mine if entry["event"] == "call_start"]
    assert any("step look element 1:" in message for message in starts)


def test_stream_prints_each_element_on_its_own_lines(tmp_path, capsys, monkeypatch, fake_server):
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    fake_server.fake.stream_delay_s = 0.005  # the elements' pieces arrive interleaved
    path = write_pipeline(tmp_path, SAY)
    outcome = invoke(capsys, monkeypatch, "run", str(path), "--input", '{"words": ["a", "b", "c"]}', "--stream")
    assert outcome.code == 0, outcome.err
    replies = json.loads(outcome.out)
    printed = [line for line in outcome.err.splitlines() if line.startswith("[say")]
    assert sorted(printed) == [f"[say {index}] {reply}" for index, reply in enumerate(replies)]


def test_pipeline_stream_names_the_element_of_each_piece(tmp_path, settings):
    fake = FakeOpenRouter(stream_delay_s=0.002)
    pipeline = load_pipeline(write_pipeline(tmp_path, SAY))

    async def collect():
        stream = pipeline.stream({"words": ["a", "b"]}, settings=settings, transport=mock_transport(fake))
        return [event async for event in stream]

    events = asyncio.run(collect())
    deltas = [event for event in events if isinstance(event, TextDelta)]
    texts = {index: "".join(delta.text for delta in deltas if delta.item_index == index) for index in (0, 1)}
    assert [texts[0], texts[1]] == events[-1].result.output
    assert {delta.item_index for delta in deltas} == {0, 1}


def test_several_hooks_each_hear_the_element_and_round():
    heard = []

    class Listener(Hooks):
        def on_call_start(self, record_key, step_id, model, **where):
            heard.append((record_key, step_id, where))

    fan_out(Listener(), Listener()).on_call_start("1", "look", "m", **place(2, 1))
    fan_out(Listener(), Listener()).on_call_start("1", "plain", "m", **place(None))
    assert heard == [("1", "look", {"item_index": 2, "round": 1})] * 2 + [("1", "plain", {})] * 2
