"""Reading what OpenRouter answered: tool calls, reasoning details, annotations, and streamed chunks."""

from __future__ import annotations

import json

from runner.chat.messages import Message, ToolCallPart
from runner.chat.reply import Reply

USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "cost": 0.0001}
DETAILS = [{"type": "reasoning.encrypted", "data": "opaque==", "id": "r1", "format": "anthropic-claude-v1"}]


def test_tool_calls_reasoning_details_and_citations_are_read():
    body = {
        "id": "gen-1",
        "model": "openai/gpt-5-mini",
        "choices": [
            {
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}
                    ],
                    "reasoning_details": DETAILS,
                    "annotations": [
                        {
                            "type": "url_citation",
                            "url_citation": {
                                "url": "https://a.example",
                                "title": "A",
                                "start_index": 0,
                                "end_index": 4,
                            },
                        }
                    ],
                },
            }
        ],
        "usage": USAGE,
    }
    reply = Reply.from_body(body, latency_ms=3)
    assert reply.tool_calls == (ToolCallPart("call_1", "lookup", '{"q": "x"}'),)
    assert json.loads(reply.reasoning_details) == DETAILS
    [citation] = reply.annotations
    assert (citation.type, citation.url, citation.title, citation.start_index, citation.end_index) == (
        "url_citation",
        "https://a.example",
        "A",
        0,
        4,
    )
    # What the reply asked for goes back as an assistant turn, reasoning details unchanged.
    turn = Message("assistant", reply.tool_calls, reasoning_details=reply.reasoning_details).to_wire()
    assert turn["tool_calls"] == body["choices"][0]["message"]["tool_calls"]
    assert turn["reasoning_details"] == DETAILS


def test_a_stream_of_chunks_adds_up_to_the_reply():
    def chunk(delta, finish=None, **extra):
        return {
            "id": "gen-2",
            "model": "m/x",
            "provider": "P",
            "choices": [{"delta": delta, "finish_reason": finish}],
            **extra,
        }

    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": '{"a": ', "reasoning": "think"}),
        chunk({"content": "1}", "reasoning_details": DETAILS}),
        chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "call_9", "type": "function", "function": {"name": "f", "arguments": '{"x"'}}
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 2}"}}]}),
        chunk({}, finish="stop"),
        {"id": "gen-2", "model": "m/x", "choices": [], "usage": USAGE},
    ]
    reply = Reply.from_stream(chunks, latency_ms=9)
    assert (reply.generation_id, reply.model, reply.provider) == ("gen-2", "m/x", "P")
    assert reply.content == '{"a": 1}' and reply.reasoning == "think" and reply.finish_reason == "stop"
    assert reply.tool_calls == (ToolCallPart("call_9", "f", '{"x": 2}'),)
    assert json.loads(reply.reasoning_details) == DETAILS
    assert reply.usage.cost_usd == 0.0001 and reply.billed and reply.error is None


def test_an_error_inside_a_stream_is_the_replys_error():
    chunks = [
        {"id": "gen-3", "choices": [{"delta": {"content": "par"}, "finish_reason": None}]},
        {
            "id": "gen-3",
            "error": {"code": 502, "message": "provider went away"},
            "choices": [{"delta": {}, "finish_reason": "error"}],
        },
    ]
    reply = Reply.from_stream(chunks, latency_ms=1)
    assert reply.error == {"code": 502, "message": "provider went away"}
    assert reply.finish_reason == "error" and reply.content == "par" and not reply.billed


def test_a_stream_without_choices_has_no_choice():
    reply = Reply.from_stream([{"id": "gen-4", "choices": []}], latency_ms=1)
    assert not reply.has_choice and reply.content is None
