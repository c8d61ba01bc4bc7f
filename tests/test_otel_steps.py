"""Traces of steps beyond a single chat call: a code step has a step span without model attributes,
and the calls of a `for_each` element and of a tool round say which element and round they were."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("opentelemetry.sdk.trace", reason="the `otel` extra is not installed")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runner import load_pipeline
from runner.fake.server import mock_transport
from runner.report.tracing import RunTracer

from .conftest import invoke, write_pipeline
from .test_otel import _received_spans, collector  # noqa: F401 - the collector fixture

MODULE = '''
def f(a: int) -> int:
    return a


def lookup(word: str) -> str:
    """Look a word up."""
    return word
'''

CODE_AND_MAP = """
name: mapped
defaults:
  model: google/gemini-2.5-flash-lite
steps:
  double:
    call: h:f
    args: {a: "{{ input.a }}"}
  say:
    module: talk
    for_each: "{{ input.words }}"
    as: word
    prompt: "Say {{ word }}"
output: "{{ steps.say.output }}"
"""


def _spans(tmp_path, settings, fake, text, record):
    (tmp_path / "h.py").write_text(MODULE, encoding="utf-8")
    pipeline = load_pipeline(write_pipeline(tmp_path, text))
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = RunTracer(provider.get_tracer("test"), pipeline.spec)

    async def run():
        tracer.start_run("run-1")
        async with pipeline.session(settings, transport=mock_transport(fake), hooks=tracer) as session:
            result = await session.run(record, key="r1")
        tracer.end_run(records_ok=1, records_failed=0, cost_usd=0.0)
        return result

    assert asyncio.run(run()).status == "ok"
    return exporter.get_finished_spans()


def test_a_code_step_has_a_step_span_without_model_attributes(tmp_path, settings, fake):
    spans = _spans(tmp_path, settings, fake, CODE_AND_MAP, {"a": 1, "words": ["x"]})
    step = next(span for span in spans if span.name == "step double")
    assert step.attributes["pipeline.step"] == "double"
    assert step.attributes["pipeline.module"] == "code"  # the kind stands in for a chat step's module
    assert step.attributes["pipeline.status"] == "ok"
    assert not any(name.startswith("gen_ai.") for name in step.attributes)


def test_otel_on_the_command_line_with_a_code_step_exports(tmp_path, capsys, monkeypatch, collector):  # noqa: F811
    (tmp_path / "h.py").write_text("def f(a: int) -> int:\n    return a\n", encoding="utf-8")
    path = write_pipeline(tmp_path, "name: o\nsteps:\n  f:\n    call: h:f\n    args: {a: '{{ input.a }}'}\n")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{collector.server_port}")
    outcome = invoke(
        capsys, monkeypatch, "run", str(path), "--mock", "--otel", "--db", str(tmp_path / "p.db"), "--input", '{"a": 1}'
    )
    assert outcome.code == 0, outcome.err
    assert sorted(span.name for span in _received_spans(collector)) == ["record 1", "run o", "step f"]


def test_the_calls_of_each_element_carry_its_index(tmp_path, settings, fake):
    spans = _spans(tmp_path, settings, fake, CODE_AND_MAP, {"a": 1, "words": ["x", "y", "z"]})
    chats = [span for span in spans if span.name.startswith("chat ")]
    assert sorted(span.attributes["pipeline.item_index"] for span in chats) == [0, 1, 2]
    for span in chats:  # each element's reply on its own span: the prompt named its word
        assert span.attributes["pipeline.step"] == "say"
        assert "pipeline.round" not in span.attributes  # no tools: no round


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


def test_the_calls_of_a_tool_loop_carry_their_round(tmp_path, settings, fake):
    spans = _spans(tmp_path, settings, fake, TOOL_MAP, {"a": 1, "words": ["x", "y"]})
    chats = [span for span in spans if span.name.startswith("chat ")]
    seen = sorted((span.attributes["pipeline.item_index"], span.attributes["pipeline.round"]) for span in chats)
    assert seen == [(0, 1), (0, 2), (1, 1), (1, 2)]  # each element: a round calling the tool, then the answer
