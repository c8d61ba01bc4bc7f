"""Building chat-completion request bodies: pure functions of the step, its messages and the model."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from enum import Enum
from typing import Any

from ..spec.model import ChatStep, Tool, freeze, thaw
from ..spec.settings_schema import SAMPLING
from .caching import with_breakpoints
from .messages import Message


class OutputMode(Enum):
    """How a step asks for JSON: strict structured outputs, plain JSON mode, or just text."""

    JSON_SCHEMA = "json_schema"
    JSON_OBJECT = "json_object"  # JSON mode, the schema in the system message
    PROMPT = "prompt"  # no response_format at all: the schema in the system message only
    TEXT = "text"


def system_with_schema(system: str | None, schema: dict[str, Any]) -> str:
    """For models without structured outputs: the schema travels in the system message."""
    instruction = "Reply with a single JSON value, and nothing else, that matches this JSON Schema:\n" + json.dumps(
        schema, ensure_ascii=False, sort_keys=True
    )
    return f"{system}\n\n{instruction}" if system else instruction


def build_body(
    step: ChatStep,
    messages: tuple[Message, ...],
    model: str,
    *,
    schema: dict[str, Any] | None,
    mode: OutputMode,
    user_id: str | None,
    server_fallbacks: tuple[str, ...] = (),
    supported_parameters: frozenset[str] | None = None,
    tool_choice: str | None = None,
) -> dict[str, Any]:
    """The JSON body of POST /chat/completions; only fields of OpenRouter's published API.

    `schema` is the step's output schema as plain JSON (thawed once per run, not per call).
    `supported_parameters` is the model's catalogue list: a tuning or sampling parameter it does
    not list is left out (with `provider.require_parameters` it would make OpenRouter answer 404). Unknown
    (None or empty): everything is sent. `tool_choice` overrides the step's for this round (the tool loop
    sends `auto` after the first).
    """
    if mode in (OutputMode.JSON_OBJECT, OutputMode.PROMPT) and schema is not None:
        messages = _with_schema(messages, schema)
    if step.prompt_cache:
        messages = with_breakpoints(messages, model)
    wire_messages = [message.to_wire() for message in messages]
    body: dict[str, Any] = {"model": model, "messages": wire_messages}
    for name, value in _settings_sent(step, supported_parameters):
        body[name] = thaw(value)  # a fresh copy for each body: bodies never share a mutable value
    body["stream"] = False
    if server_fallbacks:
        body["models"] = [model, *server_fallbacks]
    if user_id is not None:
        body["user"] = str(user_id)
    if step.provider is not None:
        body["provider"] = thaw(step.provider)
    if mode is OutputMode.JSON_SCHEMA and schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": step.id[:64], "strict": True, "schema": schema},
        }
    elif mode is OutputMode.JSON_OBJECT:
        body["response_format"] = {"type": "json_object"}
    if step.tools:
        body["tools"] = [tool_wire(tool) for tool in step.tools]
        body["tool_choice"] = tool_choice_wire(tool_choice or step.tool_choice)
    return body


_SETTINGS: dict[tuple[int, int], tuple[ChatStep, frozenset[str] | None, tuple[tuple[str, Any], ...]]] = {}


def _settings_sent(step: ChatStep, supported: frozenset[str] | None) -> tuple[tuple[str, Any], ...]:
    """The tuning and sampling settings, transforms and plugins the body carries for this step and model
    (its catalogue's parameter list), in the body's order, as frozen values: worked out once per step and
    model, not on every request (the memo holds the step itself, so an id is never mistaken for another)."""
    key = (id(step), id(supported))
    known = _SETTINGS.get(key)
    if known is not None and known[0] is step and known[1] is supported:
        return known[2]
    sent: list[tuple[str, Any]] = []
    tuning = {"temperature": step.temperature, "max_tokens": step.max_tokens, "reasoning": step.reasoning.as_body()}
    for name, value in tuning.items():
        if not supported or name in supported:
            sent.append((name, freeze(value)))
    for name in SAMPLING:
        value = getattr(step, name)
        if value is not None and (not supported or name in supported):
            sent.append((name, value))
    if step.transforms is not None:
        sent.append(("transforms", step.transforms))
    plugins = request_plugins(step.plugins or (), step.pdf_engine)
    if plugins:
        sent.append(("plugins", freeze(plugins)))
    if len(_SETTINGS) >= 1024:  # a long-lived process loading many pipelines
        _SETTINGS.clear()
    _SETTINGS[key] = (step, supported, tuple(sent))
    return tuple(sent)


def request_plugins(plugins: Sequence[Mapping[str, Any]], pdf_engine: str | None) -> list[dict[str, Any]]:
    """The step's plugins with `pdf_engine` merged in as the file-parser plugin's `pdf.engine`: one entry per
    plugin, and an engine the step's own file-parser entry names wins."""
    merged = [thaw(plugin) for plugin in plugins]
    if pdf_engine is None:
        return merged
    for plugin in merged:
        if plugin.get("id") == "file-parser":
            plugin["pdf"] = {"engine": pdf_engine, **(plugin.get("pdf") or {})}
            return merged
    return [*merged, {"id": "file-parser", "pdf": {"engine": pdf_engine}}]


def tool_wire(tool: Tool) -> dict[str, Any]:
    """A function tool as the request's `tools` lists it."""
    function: dict[str, Any] = {"name": tool.name}
    if tool.description:
        function["description"] = tool.description
    function["parameters"] = thaw(tool.parameters)
    return {"type": "function", "function": function}


def tool_choice_wire(choice: str) -> str | dict[str, Any]:
    """`auto`, `required` and `none` as they are; a tool's name as a named choice."""
    if choice in ("auto", "required", "none"):
        return choice
    return {"type": "function", "function": {"name": choice}}


def _with_schema(messages: tuple[Message, ...], schema: dict[str, Any]) -> tuple[Message, ...]:
    """The schema instruction ends the system message (its last text part), or opens a new one."""
    first = messages[0] if messages else None
    if first is None or first.role != "system":
        return (Message.text_message("system", system_with_schema(None, schema)), *messages)
    last = first.parts[-1]
    system = Message("system", (*first.parts[:-1], replace(last, text=system_with_schema(last.text, schema))))
    return (system, *messages[1:])


def repair_messages(messages: tuple[Message, ...], reply_text: str, problems: str) -> tuple[Message, ...]:
    """The re-ask: the model sees its own reply and what was wrong with it (never an API error)."""
    return (
        *messages,
        Message.text_message("assistant", reply_text),
        Message.text_message(
            "user",
            "Your reply could not be used: "
            + problems
            + "\nReply again with only the corrected JSON, no explanation and no code fence.",
        ),
    )


def encode_body(body: dict[str, Any]) -> tuple[str, bytes]:
    """The body as sent on the wire, and its response-cache key, from one JSON encoding.

    The key hashes the body without the end user's id (`user`), as build_body lays it out: the
    same step, messages and settings give the same key whoever the user is.
    """
    user = body.get("user")
    without_user = body if user is None else {key: value for key, value in body.items() if key != "user"}
    raw = json.dumps(without_user, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    key = hashlib.sha256(raw).hexdigest()
    if user is None:
        return key, raw
    return key, raw[:-1] + b',"user":' + json.dumps(user, ensure_ascii=False).encode("utf-8") + b"}"
