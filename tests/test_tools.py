"""Tool-calling chat steps (DESIGN §7): parameter schemas read from a function's source, bad tool
definitions refused at load with file and line, and the loop run against the fake OpenRouter: a cost
row per round, tool calls run concurrently, errors handed back to the model, the round limit."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import textwrap
from pathlib import Path

import pytest

from runner import load_pipeline
from runner.chat.messages import Message
from runner.chat.request import OutputMode, build_body
from runner.errors import SpecError
from runner.fake import FakeOpenRouter, Fault
from runner.fake.server import mock_transport
from runner.run.budget import body_prompt_tokens
from runner.spec.model import thaw
from runner.spec.pymodules import import_function, read_function
from runner.spec.signature import function_schema

from .conftest import FIXTURES, TEST_KEY, cost_rows, invoke, write_pipeline

BAD = sorted((FIXTURES / "tools").glob("bad_*.yaml"))
MODULE = "shop_tools"

SHOP_TOOLS = '''
import asyncio
import os
import threading
from typing import Literal, Optional

calls = []
both_arrived = threading.Barrier(2, timeout=5)


def meet():
    """With SHOP_PARALLEL set, get_order and search_kb each wait until the other is running too."""
    if os.environ.get("SHOP_PARALLEL"):
        both_arrived.wait()


def get_order(order_id: str, fields: list[str] | None = None) -> dict:
    """Look an order up by its id.

    Args:
        order_id: The order's id, as the customer wrote it.
        fields: Which fields to return.
    """
    calls.append(("get_order", order_id))
    meet()
    return {"order_id": order_id, "status": "shipped"}


async def search_kb(query: str, limit: int = 3, language: Literal["en", "de"] = "en") -> list[str]:
    """Search the help-centre articles."""
    calls.append(("search_kb", query))
    await asyncio.to_thread(meet)
    return [f"How to track an order ({language})"]


def broken(order_id: str) -> str:
    """Always fails."""
    raise LookupError(f"no order {order_id}")


def odd(order_id: str) -> set:
    """Returns what JSON cannot hold."""
    return {order_id}


def typed(
    name: str,
    count: int,
    ratio: float = 0.5,
    tags: list[str] = ("a",),
    note: Optional[str] = None,
    mode: Literal["fast", "slow"] = "fast",
    flag: bool = False,
    *,
    extra: dict[str, int] | None = None,
) -> str:
    """Show every kind of hint.

    More words about it.

    Parameters
    ----------
    name : str
        Who it is for.
    count : int
        How many.

    Returns
    -------
    str
    """
    return name
'''

PIPELINE = """\
name: tooly
input: {type: object, required: [question], properties: {question: {type: string}}}
defaults: {model: anthropic/claude-sonnet-4.5}
steps:
  answer:
    prompt: "Customer asks: {{ input.question }}"
    tools:
      - shop_tools:get_order
      - call: shop_tools:search_kb
        description: Search the help centre.
    schema: {type: object, required: [reply], additionalProperties: false, properties: {reply: {type: string}}}
output:
  reply: "{{ steps.answer.output.reply }}"
"""


def _shop_module_names() -> list[str]:
    """shop_tools as imported: from sys.path under its own name, from beside a pipeline inside its folder's package."""
    return [name for name in sys.modules if name == MODULE or name.endswith(f".{MODULE}")]


def loaded_shop():
    """The shop_tools module this test's run imported, or None when nothing imported it."""
    names = _shop_module_names()
    assert len(names) <= 1, names
    return sys.modules[names[0]] if names else None


@pytest.fixture(autouse=True)
def _forget_tool_module():
    """Each test writes its own shop_tools.py: the one a previous test imported must not be reused."""
    yield
    for name in _shop_module_names():
        sys.modules.pop(name)


def shop(tmp_path: Path, pipeline: str = PIPELINE, tools: str = SHOP_TOOLS) -> Path:
    (tmp_path / f"{MODULE}.py").write_text(textwrap.dedent(tools), encoding="utf-8")
    return write_pipeline(tmp_path, pipeline)


def run(path: Path, fake: FakeOpenRouter, settings, question: str = "Where is my order ORD-1?"):
    pipeline = load_pipeline(path)
    return asyncio.run(pipeline.run({"question": question}, settings=settings, transport=mock_transport(fake)))


# Parameter schemas from the source


def test_parameter_schemas_come_from_hints_defaults_and_docstrings(tmp_path):
    path = shop(
        tmp_path,
        PIPELINE.replace("      - shop_tools:get_order\n", "      - shop_tools:get_order\n      - shop_tools:typed\n"),
    )
    tools = {tool.name: tool for tool in load_pipeline(path).spec.step("answer").tools}
    assert list(tools) == ["get_order", "typed", "search_kb"]
    get_order = tools["get_order"]
    assert get_order.description == "Look an order up by its id."
    assert thaw(get_order.parameters) == {
        "type": "object",
        "properties": {
            "order_id": {"type": "string", "description": "The order's id, as the customer wrote it."},
            "fields": {
                "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}],
                "default": None,
                "description": "Which fields to return.",
            },
        },
        "additionalProperties": False,
        "required": ["order_id"],
    }
    typed = tools["typed"]
    assert typed.description == "Show every kind of hint.\n\nMore words about it."
    properties = thaw(typed.parameters)["properties"]
    assert properties["name"] == {"type": "string", "description": "Who it is for."}
    assert properties["count"] == {"type": "integer", "description": "How many."}
    assert properties["ratio"] == {"type": "number", "default": 0.5}
    assert properties["tags"] == {"type": "array", "items": {"type": "string"}, "default": ["a"]}
    assert properties["note"] == {"type": ["string", "null"], "default": None}
    assert properties["mode"] == {"type": "string", "enum": ["fast", "slow"], "default": "fast"}
    assert properties["flag"] == {"type": "boolean", "default": False}
    assert properties["extra"] == {
        "anyOf": [{"type": "object", "additionalProperties": {"type": "integer"}}, {"type": "null"}],
        "default": None,
    }
    assert thaw(typed.parameters)["required"] == ["name", "count"]
    # The file's description wins over the docstring.
    assert tools["search_kb"].description == "Search the help centre."


def test_sphinx_docstrings_annotated_and_quoted_hints_are_read(tmp_path):
    source = textwrap.dedent(
        '''
        import typing
        from typing import Annotated

        async def convert(amount: Annotated[float, "In the source currency"], to: "str | int", rates: typing.Any = None):
            """Convert money.

            :param amount: ignored, Annotated says it
            :param to: The target currency,
                as a code or a number.
            :returns: the amount
            """
        '''
    )
    (tmp_path / "money.py").write_text(source, encoding="utf-8")
    description, schema = function_schema(read_function("money:convert", tmp_path))
    assert description == "Convert money."
    assert schema["properties"] == {
        "amount": {"type": "number", "description": "In the source currency"},
        "to": {"type": ["string", "integer"], "description": "The target currency, as a code or a number."},
        "rates": {"default": None},
    }
    assert schema["required"] == ["amount", "to"]


def test_parameters_given_in_the_file_are_sent_as_written(tmp_path):
    given = PIPELINE.replace(
        "        description: Search the help centre.\n",
        "        description: Search the help centre.\n"
        "        parameters: {type: object, required: [query], properties: {query: {type: string, minLength: 3}}}\n",
    )
    path = shop(tmp_path, given)
    [_, search] = load_pipeline(path).spec.step("answer").tools
    assert thaw(search.parameters) == {
        "type": "object",
        "required": ["query"],
        "properties": {"query": {"type": "string", "minLength": 3}},
    }


def test_loading_reads_the_tool_module_without_importing_it(tmp_path, capsys, monkeypatch):
    crashing = "raise SystemExit('imported!')\n" + SHOP_TOOLS
    path = shop(tmp_path, tools=crashing)
    assert load_pipeline(path).spec.step("answer").tools[0].name == "get_order"
    assert loaded_shop() is None
    outcome = invoke(capsys, monkeypatch, "validate", str(path))
    assert outcome.code == 0, outcome.err
    assert loaded_shop() is None


def test_a_module_next_to_the_pipeline_wins_over_one_on_sys_path(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / f"{MODULE}.py").write_text("def get_order(order_id: str) -> str:\n    return 'sys.path'\n")
    monkeypatch.syspath_prepend(str(elsewhere))
    beside = tmp_path / "pipeline"
    beside.mkdir()
    assert import_function(f"{MODULE}:get_order", beside)("x") == "sys.path"
    (beside / f"{MODULE}.py").write_text("def get_order(order_id: str) -> str:\n    return 'beside'\n")
    assert import_function(f"{MODULE}:get_order", beside)("x") == "beside"


def test_two_pipelines_tool_modules_of_the_same_name_never_meet(tmp_path):
    answers = []
    for status in ("shipped", "lost"):
        folder = tmp_path / status
        folder.mkdir()
        (folder / f"{MODULE}.py").write_text(f"def get_order(order_id: str) -> str:\n    return {status!r}\n")
        answers.append(import_function(f"{MODULE}:get_order", folder)("x"))
    assert answers == ["shipped", "lost"]


def test_a_syntax_error_in_a_tool_module_is_told_at_its_file_and_line(tmp_path):
    path = shop(tmp_path, tools="def get_order(order_id: str) -> str:\n    return (\n")
    with pytest.raises(SpecError) as caught:
        load_pipeline(path)
    assert str(caught.value).startswith(f"{tmp_path / 'shop_tools.py'}:")
    assert "step 'answer', tool shop_tools:get_order: module 'shop_tools' has a syntax error" in str(caught.value)


def _expectations(path: Path) -> tuple[int, list[str]]:
    text = path.read_text()
    line = int(re.search(r"^# expect-line: (\d+)$", text, re.MULTILINE).group(1))
    words = re.search(r"^# expect: (.+)$", text, re.MULTILINE).group(1)
    return line, [word.strip() for word in words.split("|")]


@pytest.mark.parametrize("path", BAD, ids=[path.stem for path in BAD])
def test_a_bad_tool_definition_is_a_load_error_naming_file_line_and_fix(path):
    line, words = _expectations(path)
    with pytest.raises(SpecError) as caught:
        load_pipeline(path)
    message = str(caught.value)
    assert f"{path}:{line}:" in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert caught.value.exit_code == 2


def test_there_is_a_bad_fixture_for_each_way_a_tool_can_be_wrong():
    assert len(BAD) >= 15


# The loop against the fake


def test_two_rounds_of_parallel_calls_then_an_answer_each_round_a_cost_row(tmp_path, settings, db_path, monkeypatch):
    monkeypatch.setenv("SHOP_PARALLEL", "1")
    fake = FakeOpenRouter(tool_rounds=2)
    result = run(shop(tmp_path), fake, settings)
    assert result.status == "ok", result.steps["answer"].error
    assert set(result.output["reply"]) and fake.chat_requests == 3
    # Both tools ran in each of the two rounds, and never one after the other: get_order waits at a
    # barrier (5 s, then it raises) that only search_kb's call running alongside lets it pass.
    module = loaded_shop()
    assert sorted(name for name, _ in module.calls) == ["get_order", "get_order", "search_kb", "search_kb"]
    assert module.both_arrived.broken is False
    rows = cost_rows(db_path)
    assert [(row["round"], row["attempt"], row["outcome"]) for row in rows] == [
        (1, 1, "ok"),
        (2, 2, "ok"),
        (3, 3, "ok"),
    ]
    assert sum(row["cost_usd"] for row in rows) == pytest.approx(fake.total_cost)
    assert result.steps["answer"].cost_usd == pytest.approx(fake.total_cost)
    first, second, third = fake.chat_bodies()
    assert [tool["function"]["name"] for tool in first["tools"]] == ["get_order", "search_kb"]
    assert first["tool_choice"] == "auto"
    # Round 2 carries the assistant's calls and one `tool` message per call, in the calls' order.
    turn, *answers = second["messages"][-3:]
    assert turn["role"] == "assistant" and turn["content"] is None and len(turn["tool_calls"]) == 2
    assert [answer["tool_call_id"] for answer in answers] == [call["id"] for call in turn["tool_calls"]]
    assert json.loads(answers[0]["content"])["status"] == "shipped"
    [article] = json.loads(answers[1]["content"])
    assert article in ("How to track an order (en)", "How to track an order (de)")
    assert len(third["messages"]) == len(second["messages"]) + 3


def test_reasoning_details_go_back_with_the_assistant_turn(tmp_path, settings):
    fake = FakeOpenRouter()
    replies = record_replies(fake)
    run(shop(tmp_path), fake, settings)
    sent = replies[0]["choices"][0]["message"]["reasoning_details"]
    assert sent[0]["type"] == "reasoning.text" and sent[0]["signature"]
    [turn] = [message for message in fake.chat_bodies()[1]["messages"] if message["role"] == "assistant"]
    assert turn["reasoning_details"] == sent


def record_replies(fake: FakeOpenRouter) -> list[dict]:
    """The bodies the fake answers chat requests with, in order."""
    replies = []
    handle = fake.handle

    async def recording(method, path, *rest):
        response = await handle(method, path, *rest)
        if path.endswith("chat/completions"):
            replies.append(response.body)
        return response

    fake.handle = recording
    return replies


def test_a_tool_that_raises_is_an_error_result_the_model_sees_and_the_log_keeps(tmp_path, settings, caplog):
    raising = PIPELINE.replace("      - shop_tools:get_order\n", "      - shop_tools:broken\n")
    fake = FakeOpenRouter()
    with caplog.at_level(logging.WARNING, logger="runner.run.steps.tools"):
        result = run(shop(tmp_path, raising), fake, settings)
    assert result.status == "ok"
    second = fake.chat_bodies()[1]
    results = {
        message["tool_call_id"]: message["content"] for message in second["messages"] if message["role"] == "tool"
    }
    broken_call = next(call for call in second["messages"][-3]["tool_calls"] if call["function"]["name"] == "broken")
    error = json.loads(results[broken_call["id"]])["error"]
    assert error.startswith("LookupError: no order ")
    assert "raised LookupError" in caplog.text and "Traceback" in caplog.text


def test_a_value_that_is_not_json_is_an_error_result(tmp_path, settings):
    odd = PIPELINE.replace("      - shop_tools:get_order\n", "      - shop_tools:odd\n")
    fake = FakeOpenRouter()
    fake.enqueue(Fault("tool_calls", tool_name="odd"))
    assert run(shop(tmp_path, odd), fake, settings).status == "ok"
    [answer] = [message for message in fake.chat_bodies()[1]["messages"] if message["role"] == "tool"]
    error = json.loads(answer["content"])["error"]
    assert error.startswith("the tool returned a value that is not JSON (") and "set" in error


def test_invalid_arguments_are_refused_before_the_call_and_told_to_the_model(tmp_path, settings, caplog):
    fake = FakeOpenRouter()
    fake.enqueue(Fault("tool_calls", tool_name="search_kb", arguments='{"query": 5, "language": "fr"}'))
    with caplog.at_level(logging.WARNING, logger="runner.run.steps.tools"):
        result = run(shop(tmp_path), fake, settings)
    assert result.status == "ok"
    assert loaded_shop().calls == []  # the tool was never called (its module is imported when the run starts)
    [answer] = [message for message in fake.chat_bodies()[1]["messages"] if message["role"] == "tool"]
    error = json.loads(answer["content"])["error"]
    assert error.startswith("invalid arguments: ")
    assert "language: 'fr' is not one of ['en', 'de']" in error and "query: 5 is not of type 'string'" in error
    assert "not run: invalid arguments" in caplog.text


def test_arguments_that_are_not_json_or_name_no_tool_are_told_to_the_model(tmp_path, settings):
    fake = FakeOpenRouter()
    fake.enqueue(Fault("tool_calls", tool_name="search_kb", arguments='{"query": '))
    run(shop(tmp_path), fake, settings)
    [answer] = [message for message in fake.chat_bodies()[1]["messages"] if message["role"] == "tool"]
    assert json.loads(answer["content"])["error"].startswith("the arguments are not valid JSON")

    fake = FakeOpenRouter()
    fake.enqueue(Fault("tool_calls", tool_name="delete_everything", arguments="{}"))
    run(shop(tmp_path), fake, settings, question="Something else")  # not the cached conversation
    [answer] = [message for message in fake.chat_bodies()[1]["messages"] if message["role"] == "tool"]
    assert json.loads(answer["content"]) == {
        "error": "there is no tool named 'delete_everything'; the tools are: get_order, search_kb"
    }


def test_reaching_max_tool_rounds_fails_the_step_with_its_own_kind(tmp_path, settings, db_path):
    limited = PIPELINE.replace("    schema:", "    max_tool_rounds: 2\n    schema:")
    fake = FakeOpenRouter(tool_rounds=10)
    result = run(shop(tmp_path, limited), fake, settings)
    assert result.status == "failed"
    error = result.steps["answer"].error
    assert error.kind == "tool_rounds_exhausted"
    assert "after 2 round(s) (max_tool_rounds 2)" in error.message
    assert fake.chat_requests == 2
    assert [row["round"] for row in cost_rows(db_path)] == [1, 2]
    assert len(loaded_shop().calls) == 2  # the tools of round 1 ran; round 2's calls were not run


def test_the_final_answer_is_checked_and_re_asked_like_any_chat_step(tmp_path, settings, db_path):
    fake = FakeOpenRouter()
    fake.enqueue(Fault("tool_calls", tool_name="search_kb"))
    fake.enqueue(Fault("content", content="Your order shipped."))
    result = run(shop(tmp_path), fake, settings)
    assert result.status == "ok"
    assert [(row["round"], row["outcome"]) for row in cost_rows(db_path)] == [
        (1, "ok"),
        (2, "invalid_json"),
        (3, "ok"),
    ]
    third = fake.chat_bodies()[2]
    assert third["messages"][-2] == {"role": "assistant", "content": "Your order shipped."}
    assert "could not be used" in third["messages"][-1]["content"]


@pytest.mark.parametrize(
    ("choice", "first", "requests"),
    [
        ("get_order", {"type": "function", "function": {"name": "get_order"}}, 2),
        ("required", "required", 2),
        ("none", "none", 1),
    ],
)
def test_tool_choice_is_sent_in_the_first_round_then_auto(tmp_path, settings, choice, first, requests):
    chosen = PIPELINE.replace("    schema:", f"    tool_choice: {choice}\n    schema:")
    fake = FakeOpenRouter()
    result = run(shop(tmp_path, chosen), fake, settings)
    assert result.status == "ok", result.steps["answer"].error
    bodies = fake.chat_bodies()
    assert [body["tool_choice"] for body in bodies] == [first, *["auto"] * (requests - 1)]
    if choice == "get_order":  # a forced tool is the only one called
        assert [name for name, _ in loaded_shop().calls] == ["get_order"]


def test_a_tool_round_replayed_from_the_cache_runs_the_tools_again(tmp_path, settings, db_path):
    one_tool = PIPELINE.replace("      - shop_tools:get_order\n", "")
    path = shop(tmp_path, one_tool)
    fake = FakeOpenRouter()
    first = run(path, fake, settings)
    second = run(path, fake, settings)
    assert first.output == second.output and fake.chat_requests == 2
    rows = cost_rows(db_path)
    assert [(row["round"], row["cached"]) for row in rows] == [(1, 0), (2, 0), (1, 1), (2, 1)]
    assert len(loaded_shop().calls) == 2


def test_a_tool_module_that_fails_to_import_stops_the_run_before_any_record(tmp_path, capsys, monkeypatch, fake_server):
    path = shop(tmp_path, tools="raise RuntimeError('no database configured')\n" + SHOP_TOOLS)
    data = tmp_path / "six.jsonl"
    data.write_text("".join(json.dumps({"question": f"q{n}"}) + "\n" for n in range(6)), encoding="utf-8")
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    outcome = invoke(capsys, monkeypatch, "run", str(path), "--no-cache", "--inputs", str(data))
    assert outcome.code == 2, outcome.err
    assert fake_server.fake.chat_requests == 0  # like a code step's module: imported before any record, not per record
    assert outcome.err.strip() == (
        f"{path}:8:9: step 'answer', tool shop_tools:get_order: importing module 'shop_tools' raised RuntimeError: "
        f"no database configured ({tmp_path / 'shop_tools.py'}:1)"
    )


def test_the_budget_counts_the_tool_definitions_as_prompt(tmp_path):
    step = load_pipeline(shop(tmp_path)).spec.step("answer")
    messages = (Message.text_message("user", "Where is my order?"),)
    with_tools = build_body(step, messages, step.model, schema=None, mode=OutputMode.TEXT, user_id=None)
    without = {key: value for key, value in with_tools.items() if key not in ("tools", "tool_choice")}
    definitions = len(json.dumps(with_tools["tools"])) / 3
    assert body_prompt_tokens(with_tools) - body_prompt_tokens(without) >= definitions


def test_a_mock_run_through_the_cli_shows_spend_by_round(tmp_path, capsys, monkeypatch):
    path = shop(tmp_path)
    ran = invoke(capsys, monkeypatch, "run", str(path), "--mock", "--input", '{"question": "Where is ORD-1?"}')
    assert ran.code == 0, ran.err
    assert json.loads(ran.out)["reply"]
    shown = invoke(capsys, monkeypatch, "costs", "--by", "step,round", "--include-mock", "--format", "json")
    rows = json.loads(shown.out)
    assert [(row["step"], row["round"], row["calls"]) for row in sorted(rows, key=lambda row: row["round"])] == [
        ("answer", 1, 1),
        ("answer", 2, 1),
    ]


# The fake on its own


def test_the_fake_calls_every_offered_tool_with_valid_arguments_then_answers():
    from jsonschema import Draft202012Validator

    parameters = {
        "type": "object",
        "required": ["order_id"],
        "additionalProperties": False,
        "properties": {"order_id": {"type": "string", "pattern": "^ORD-[0-9]{4}$"}, "days": {"type": "integer"}},
    }
    tools = [
        {"type": "function", "function": {"name": "find_order", "parameters": parameters}},
        {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}},
    ]
    fake = FakeOpenRouter()
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "tools": tools}
    reply = asyncio.run(
        fake.handle("POST", "/api/v1/chat/completions", {}, {"authorization": "Bearer k"}, json.dumps(body).encode())
    )
    choice = reply.body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    calls = choice["message"]["tool_calls"]
    assert [call["function"]["name"] for call in calls] == ["find_order", "now"]
    assert all(call["id"].startswith("call_") for call in calls) and len({call["id"] for call in calls}) == 2
    assert Draft202012Validator(parameters).is_valid(json.loads(calls[0]["function"]["arguments"]))
    # Without an answer to each call, OpenRouter refuses the conversation.
    body["messages"].append({"role": "assistant", "content": None, "tool_calls": calls})
    refused = asyncio.run(
        fake.handle("POST", "chat/completions", {}, {"authorization": "Bearer k"}, json.dumps(body).encode())
    )
    assert refused.status == 400 and calls[1]["id"] in refused.body["error"]["message"]
    body["messages"] += [{"role": "tool", "tool_call_id": call["id"], "content": "{}"} for call in calls]
    answered = asyncio.run(
        fake.handle("POST", "chat/completions", {}, {"authorization": "Bearer k"}, json.dumps(body).encode())
    )
    final = answered.body["choices"][0]
    assert final["finish_reason"] == "stop" and final["message"]["content"] and "tool_calls" not in final["message"]
