"""How the fake OpenRouter plays a model that uses tools: which offered functions it calls, each call
with arguments valid for the function's parameter schema (chosen from the prompt's seed), the
`reasoning_details` a reasoning model sends with its calls, and the conversations OpenRouter refuses."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any

from ..plan.synth import Synthesizer
from .faults import Fault
from .replies import provider_of

BILLING_FAULTS = frozenset({"hang", "no_usage", "no_cost", "byok", "plugin_fee", "served_model"})


def functions(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's function tools (`function` of each `tools` entry)."""
    return [
        tool.get("function") or {}
        for tool in body.get("tools") or ()
        if isinstance(tool, dict) and tool.get("type") == "function"
    ]


def functions_to_call(body: dict[str, Any], tool_rounds: int) -> list[dict[str, Any]]:
    """The functions a tool-using model calls now: all of them with `auto` until the conversation holds
    `tool_rounds` rounds of calls, all of them every time with `required`, the named one with a named
    choice, none with `none`."""
    offered = functions(body)
    choice = body.get("tool_choice", "auto")
    if not offered or choice == "none":
        return []
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return [function for function in offered if function.get("name") == name]
    if choice == "required":
        return offered
    rounds = sum(1 for message in body.get("messages") or () if message.get("tool_calls"))
    return offered if rounds < tool_rounds else []


def calls(
    body: dict[str, Any],
    fault: Fault | None,
    tool_rounds: int,
    synthesizer: Callable[[Any], Synthesizer],
    seed: bytes,
    prompt_text: str,
) -> list[dict[str, Any]]:
    """The reply's `tool_calls`: a `tool_calls` fault's one call, or the calls a tool-using model makes now."""
    if fault is not None and fault.kind == "tool_calls":
        made = call(faulted_function(body, fault.tool_name), synthesizer, seed, prompt_text, 0)
        if fault.arguments is not None:
            made["function"]["arguments"] = fault.arguments
        return [made]
    else:
        shaped = fault is not None and fault.kind not in BILLING_FAULTS  # the fault decides the reply's content
        wanted = [] if shaped else functions_to_call(body, tool_rounds)
    return [call(function, synthesizer, seed, prompt_text, index) for index, function in enumerate(wanted)]


def faulted_function(body: dict[str, Any], tool_name: str | None) -> dict[str, Any]:
    """The function a `tool_calls` fault calls: the one named, else the first offered."""
    offered = functions(body)
    chosen = next((function for function in offered if function.get("name") == tool_name), None)
    if chosen is None:
        chosen = offered[0] if offered and tool_name is None else {"name": tool_name or "lookup"}
    return chosen


def call(
    function: dict[str, Any], synthesizer: Callable[[Any], Synthesizer], seed: bytes, prompt_text: str, index: int
) -> dict[str, Any]:
    """One tool call (`call_...` id) with arguments valid for the function's parameters."""
    name = function.get("name", "lookup")
    call_seed = hashlib.sha256(seed + f"{index}:{name}".encode()).digest()
    arguments = synthesizer(function.get("parameters") or {"type": "object"}).value(call_seed, prompt_text)
    return {
        "id": f"call_{call_seed.hex()[:24]}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def reasoning_details(model: str, reasoning: str, seed: bytes) -> list[dict[str, Any]]:
    """`reasoning_details` as providers send them with tool calls: Anthropic's signed text, others encrypted."""
    if provider_of(model) == "Anthropic":
        return [
            {
                "type": "reasoning.text",
                "text": reasoning,
                "signature": base64.b64encode(seed).decode("ascii"),
                "format": "anthropic-claude-v1",
                "index": 0,
            }
        ]
    formats = {"Google AI Studio": "google-gemini-v1", "OpenAI": "openai-responses-v1"}
    return [
        {
            "type": "reasoning.encrypted",
            "data": base64.b64encode(seed + reasoning.encode("utf-8")).decode("ascii"),
            "format": formats.get(provider_of(model), "unknown"),
            "index": 0,
        }
    ]


def unanswered(messages: list[dict[str, Any]]) -> list[str]:
    """Ids of tool calls no later `tool` message answers (OpenRouter refuses such a conversation with a 400)."""
    answered = {message.get("tool_call_id") for message in messages if message.get("role") == "tool"}
    return [
        call.get("id")
        for message in messages
        if message.get("role") == "assistant"
        for call in message.get("tool_calls") or ()
        if call.get("id") not in answered
    ]
