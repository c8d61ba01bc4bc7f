"""A chat step's tool loop: each round one billed request; the tools a reply calls run concurrently,
their arguments checked against the tool's parameter schema first, and their results (or what went
wrong: invalid arguments, an exception) go back to the model as `tool` messages with the assistant
turn and its `reasoning_details`, until the model answers or `max_tool_rounds` is reached.

The chat runner drives the requests (cache, budget, fallbacks, re-asks); this module owns what
happens between them. A failing tool is the model's to handle, never a provider error in a prompt.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from ...chat.messages import Message, TextPart, ToolCallPart, ToolResultPart
from ...chat.reply import Reply
from ...chat.verdict import Verdict
from ...errors import SpecError
from ...outcomes import Outcome
from ...spec.model import ChatStep, Tool, thaw
from ...spec.pymodules import LookupProblem, import_failure, import_function, split_ref
from ...spec.yamlmarks import SourceMap

log = logging.getLogger(__name__)

TOOLS_CALLED = Verdict(Outcome.OK)  # a reply that called tools: billed and sound, but not the answer yet


class ToolBox:
    """One step's tools for a run: parameter validators built and functions imported when the session starts,
    so a module that cannot be imported stops the run before any record (SpecError naming the pipeline file
    and the tool's line, and the module's file and line), as a code step's does."""

    def __init__(self, step: ChatStep, path: str, source: SourceMap) -> None:
        self.step = step
        self._tools = {tool.name: tool for tool in step.tools}
        self._validators = {tool.name: Draft202012Validator(thaw(tool.parameters)) for tool in step.tools}
        self._functions: dict[str, Callable[..., Any]] = {
            tool.name: _imported(step, index, tool, path, source) for index, tool in enumerate(step.tools)
        }

    def rounds(self) -> ToolRounds:
        """A fresh loop, for one model's conversation."""
        return ToolRounds(self)

    async def run_call(self, call: ToolCallPart, record_key: str) -> str:
        """One tool call's result as the `tool` message's content: the return value as JSON (a string as
        it is), or `{"error": ...}` saying what went wrong, which is logged too."""
        tool = self._tools.get(call.name)
        if tool is None:
            offered = ", ".join(self._tools)
            return self._refuse(record_key, call, f"there is no tool named '{call.name}'; the tools are: {offered}")
        try:
            arguments = json.loads(call.arguments or "{}")
        except json.JSONDecodeError as exc:
            return self._refuse(record_key, call, f"the arguments are not valid JSON: {exc.msg}")
        if not isinstance(arguments, dict):
            return self._refuse(record_key, call, "the arguments must be a JSON object")
        problems = sorted(
            self._validators[tool.name].iter_errors(arguments), key=lambda error: list(error.absolute_path)
        )
        if problems:
            described = "; ".join(_problem(error) for error in problems)
            return self._refuse(record_key, call, f"invalid arguments: {described}")
        function = self._functions[tool.name]
        try:
            if inspect.iscoroutinefunction(function):
                value = await function(**arguments)
            else:
                value = await asyncio.to_thread(function, **arguments)
                if inspect.isawaitable(value):  # an async function behind a plain decorator
                    value = await value
        except Exception as exc:
            log.warning(
                "record %s step %s: tool %s (call %s) raised %s",
                record_key,
                self.step.id,
                call.name,
                call.id,
                type(exc).__name__,
                exc_info=True,
            )
            return _error(f"{type(exc).__name__}: {exc}")
        if isinstance(value, str):
            return value
        try:
            return json.dumps(value, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            problem = f"the tool returned a value that is not JSON ({exc})"
            log.warning(
                "record %s step %s: tool %s (call %s): %s", record_key, self.step.id, call.name, call.id, problem
            )
            return _error(problem)

    def _refuse(self, record_key: str, call: ToolCallPart, problem: str) -> str:
        log.warning(
            "record %s step %s: tool call %s (%s) not run: %s", record_key, self.step.id, call.id, call.name, problem
        )
        return _error(problem)


class ToolRounds:
    """The rounds of one model's conversation: which round this is, what `tool_choice` to send, and the
    conversation after the tools a reply called have run."""

    def __init__(self, box: ToolBox) -> None:
        self.box = box
        self.number = 1

    @property
    def tool_choice(self) -> str:
        """The step's choice in round 1; then `auto`, or a forced tool would be called forever."""
        choice = self.box.step.tool_choice
        return choice if self.number == 1 or choice == "none" else "auto"

    def calls_tools(self, reply: Reply) -> bool:
        """A reply that asks for tools (when the step let it) rather than answering."""
        return bool(reply.tool_calls) and self.box.step.tool_choice != "none" and reply.finish_reason != "length"

    @property
    def exhausted(self) -> bool:
        return self.number >= self.box.step.max_tool_rounds

    def exhausted_message(self) -> str:
        return (
            f"the model was still calling tools after {self.number} round(s) (max_tool_rounds "
            f"{self.box.step.max_tool_rounds}); raise max_tool_rounds or make the prompt ask for an answer"
        )

    async def answer(self, conversation: tuple[Message, ...], reply: Reply, record_key: str) -> tuple[Message, ...]:
        """The conversation for the next round: the assistant's turn as sent (with its reasoning_details),
        then each call's result, the calls run concurrently."""
        parts = (TextPart(reply.content),) if reply.content else ()
        turn = Message("assistant", (*parts, *reply.tool_calls), reasoning_details=reply.reasoning_details)
        results = await asyncio.gather(*(self.box.run_call(call, record_key) for call in reply.tool_calls))
        answers = tuple(
            Message("tool", (ToolResultPart(call.id, result),))
            for call, result in zip(reply.tool_calls, results, strict=True)
        )
        self.number += 1
        return (*conversation, turn, *answers)

    def next(self) -> None:
        """A request that is not a tool round's answer (a re-ask) still counts as a round."""
        self.number += 1


def _imported(step: ChatStep, index: int, tool: Tool, path: str, source: SourceMap) -> Callable[..., Any]:
    def stop(problem: str) -> SpecError:
        line, column = source.where(("steps", step.id, "tools", index))
        return SpecError(f"step '{step.id}', tool {tool.call}: {problem}", path=path, line=line, column=column)

    try:
        return import_function(tool.call, Path(tool.folder))
    except LookupProblem as exc:  # the module changed since the file was loaded
        raise stop(str(exc)) from None
    except (Exception, SystemExit) as exc:  # the user's module: anything it raises at import stops the run
        log.info("step %s: importing tool %s raised", step.id, tool.call, exc_info=True)  # the traceback, with -v
        raise stop(import_failure(split_ref(tool.call)[0], exc)) from None


def _error(problem: str) -> str:
    return json.dumps({"error": problem}, ensure_ascii=False)


def _problem(error) -> str:
    where = "/".join(str(part) for part in error.absolute_path)
    return f"{where}: {error.message}" if where else error.message
