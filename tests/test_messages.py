"""Messages as parts: wire forms, token estimates, and bodies byte-identical to those built before parts."""

from __future__ import annotations

import base64
import hashlib
import json
import pickle
from pathlib import Path

import pytest
import yaml

from runner.api import load_pipeline
from runner.chat.messages import (
    IMAGE_TOKENS,
    AudioPart,
    CacheControl,
    FilePart,
    ImagePart,
    Message,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)
from runner.chat.request import OutputMode, build_body, encode_body, repair_messages
from runner.run.budget import body_prompt_tokens, estimate_prompt_tokens
from runner.spec.model import thaw

from .conftest import EXAMPLES

# sha256 of every example body (and its response-cache key) as built before messages had parts.
GOLDEN = Path(__file__).parent / "data" / "example_bodies.json"
PDF = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.4 " + b"x" * 2991).decode()


def _example_bodies() -> dict[str, object]:
    """Every example step, every case input, every output mode, first ask and re-ask."""
    found: dict[str, object] = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        if path.name.endswith(".cases.yaml"):
            continue
        pipeline = load_pipeline(path)
        cases = yaml.safe_load(path.with_name(path.stem + ".cases.yaml").read_text(encoding="utf-8"))["cases"]
        for number, case in enumerate(cases):
            steps = {
                step.id: {"output": {"a": "b"} if step.schema is not None else "text out", "status": "ok"}
                for step in pipeline.spec.steps
            }
            context = {"input": case["input"], "steps": steps}
            for step in pipeline.spec.steps:
                try:
                    messages = pipeline.renderer.messages(step, context)
                except Exception as exc:  # the golden file records which renders fail, by class
                    found[f"{path.stem}/{number}/{step.id}"] = f"render error {type(exc).__name__}"
                    continue
                schema = thaw(step.schema) if step.schema is not None else None
                for mode in OutputMode:
                    for conversation in (messages, repair_messages(messages, "not json", "a problem")):
                        body = build_body(
                            step,
                            conversation,
                            step.model,
                            schema=schema,
                            mode=mode,
                            user_id="u1",
                            server_fallbacks=("x/y",),
                            supported_parameters=frozenset({"temperature"}),
                        )
                        key, raw = encode_body(body)
                        name = f"{path.stem}/{number}/{step.id}/{mode.value}/{len(conversation)}"
                        found[name] = [key, hashlib.sha256(raw).hexdigest()]
    return found


def test_example_bodies_are_byte_identical_to_those_built_before_parts():
    # A changed byte would change the response-cache key and turn every user's cache cold.
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert len(golden) > 60
    recorded = {name.split("/")[0] for name in golden}  # examples added since have no bodies from before
    assert {name: body for name, body in _example_bodies().items() if name.split("/")[0] in recorded} == golden


def test_a_lone_text_part_is_sent_as_a_string():
    assert Message.text_message("user", "héllo").to_wire() == {"role": "user", "content": "héllo"}


def test_each_part_has_the_openrouter_wire_form():
    message = Message(
        "user",
        (
            TextPart("look", CacheControl(ttl="1h")),
            ImagePart("https://example.com/a.png", detail="low"),
            FilePart("a.pdf", PDF),
            AudioPart("UklGRg==", "wav"),
        ),
    )
    assert message.to_wire() == {
        "role": "user",
        "content": [
            {"type": "text", "text": "look", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
            {"type": "file", "file": {"filename": "a.pdf", "file_data": PDF}},
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        ],
    }


def test_tool_calls_and_results_have_their_wire_form():
    call = ToolCallPart("call_1", "get_weather", '{"city": "Oslo"}')
    asked = Message("assistant", (call,), reasoning_details='[{"type": "reasoning.text", "text": "hm"}]')
    answered = Message("tool", (ToolResultPart("call_1", "12 C"),))
    assert asked.to_wire() == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
        ],
        "reasoning_details": [{"type": "reasoning.text", "text": "hm"}],
    }
    assert answered.to_wire() == {"role": "tool", "tool_call_id": "call_1", "content": "12 C"}


@pytest.mark.parametrize(
    "message",
    [
        Message.text_message("system", "be brief"),
        Message("user", (TextPart("a", CacheControl()), ImagePart("data:image/png;base64,AAAA"))),
        Message("user", (FilePart("a.pdf", PDF), AudioPart("AAAA", "mp3"))),
        Message("assistant", (TextPart("let me look"), ToolCallPart("c", "f", "{}")), reasoning_details="[]"),
        Message("tool", (ToolResultPart("c", "done"),)),
    ],
)
def test_wire_forms_read_back_and_values_pickle(message):
    assert Message.from_wire(message.to_wire()) == message
    assert pickle.loads(pickle.dumps(message)) == message
    with pytest.raises(AttributeError):
        message.role = "user"  # frozen


@pytest.mark.parametrize(
    ("role", "parts", "problem"),
    [
        ("user", (ToolCallPart("c", "f", "{}"),), "assistant"),
        ("user", (ToolResultPart("c", "x"),), "tool result"),
        ("tool", (TextPart("x"),), "tool result"),
        ("system", (ImagePart("https://example.com/a.png"),), "text parts only"),
    ],
)
def test_a_part_in_the_wrong_message_is_refused(role, parts, problem):
    with pytest.raises(ValueError, match=problem):
        Message(role, parts)


def test_an_image_is_estimated_flat_not_by_its_base64_size():
    huge = "data:image/png;base64," + "A" * 3_000_000
    with_image = Message("user", (TextPart("What is this?"), ImagePart(huge)))
    assert (
        estimate_prompt_tokens([with_image])
        == estimate_prompt_tokens([Message.text_message("user", "What is this?")]) + IMAGE_TOKENS
    )


def test_files_and_audio_are_estimated_by_their_decoded_size():
    assert FilePart("a.pdf", PDF).estimated_tokens() == 3000 / 3
    assert AudioPart(base64.b64encode(b"a" * 25_000).decode(), "wav").estimated_tokens() == 100


def test_the_budget_reads_a_body_back_as_parts():
    body = {"messages": [Message("user", (TextPart("abc"), ImagePart("https://example.com/a.png"))).to_wire()]}
    assert body_prompt_tokens(body) == 1 + 8 + IMAGE_TOKENS


def test_json_mode_appends_the_schema_to_the_last_system_text_part(tmp_path):
    from runner.spec import load_spec

    from .conftest import write_pipeline

    step = load_spec(write_pipeline(tmp_path, "name: t\nsteps:\n  a:\n    model: m/x\n    prompt: hi\n")).steps[0]
    system = Message("system", (TextPart("rules", CacheControl()), TextPart("be brief")))
    body = build_body(
        step,
        (system, Message.text_message("user", "hi")),
        "m/x",
        schema={"type": "object"},
        mode=OutputMode.JSON_OBJECT,
        user_id=None,
    )
    content = body["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "rules", "cache_control": {"type": "ephemeral"}}
    assert content[1]["text"].startswith("be brief\n\nReply with a single JSON value")


def test_a_re_ask_is_two_more_text_messages():
    first = (Message.text_message("user", "hi"),)
    again = repair_messages(first, "{bad", "not JSON")
    assert [message.role for message in again] == ["user", "assistant", "user"]
    assert again[1].text == "{bad" and again[2].text.startswith("Your reply could not be used: not JSON")
