"""The code step's runner: the function named by `call`, imported once per session, called with the rendered
`args` (awaited when it is `async def`, else in a thread of its own), within `timeout_s`; its return value
must be JSON (and match `schema`). No model call, no cost event.

A failure of the function fails the record with kind `code_error`: the traceback goes to the log, the
record's error names the exception type only (its message may hold the record's data).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...chat.verdict import check_reply, compile_validator
from ...errors import FailureSummary, RenderError, SpecError
from ...outcomes import FailureKind, Status
from ...spec.code import CodeStep, arg_field
from ...spec.model import thaw
from ...spec.pymodules import (
    LookupProblem,
    argument_problems,
    import_failure,
    import_function,
    runtime_parameters,
)
from ...spec.yamlmarks import SourceMap
from ..results import StepResult
from .base import Scope, Services, render_failed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Prepared:
    function: Callable[..., Any]
    is_async: bool
    validator: Any  # the schema's validator, or None


class CodeRunner:
    """Imports every code step's function when the session starts: a missing module, function or argument
    stops the run before any record (SpecError naming the pipeline file and the line of `call`)."""

    def __init__(self, services: Services) -> None:
        self._renderer = services.renderer
        spec = services.spec
        folder = Path(spec.path).resolve().parent
        self._steps = {
            step.id: _prepare(step, folder, spec.path, spec.source) for step in spec.steps if isinstance(step, CodeStep)
        }

    async def run(self, step: CodeStep, scope: Scope) -> StepResult:
        prepared = self._steps[step.id]
        try:
            kwargs = self._arguments(step, step.args, (), scope.context)
        except RenderError as exc:
            log.error("record %s: %s", scope.key, exc)
            return render_failed(step.id, exc)
        started = time.monotonic()
        try:
            async with asyncio.timeout(step.timeout_s) as deadline:
                value = await (prepared.function(**kwargs) if prepared.is_async else _in_thread(prepared, kwargs))
                if inspect.isawaitable(value):  # a plain (or decorated) function that hands back a coroutine
                    value = await value
        except TimeoutError as exc:
            if not deadline.expired():
                return _raised(step, scope, exc)
            log.error("record %s step %s: %s did not return within %g s", scope.key, step.id, step.call, step.timeout_s)
            return _failed(step, f"{step.call} did not return within timeout_s ({step.timeout_s:g} s)")
        except (Exception, SystemExit) as exc:
            return _raised(step, scope, exc)
        latency_ms = int((time.monotonic() - started) * 1000)
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            log.error("record %s step %s: %s returned a value that is not JSON: %s", scope.key, step.id, step.call, exc)
            return _failed(step, f"{step.call} returned a value that is not JSON ({exc})")
        if prepared.validator is None:
            return StepResult(step.id, Status.OK, output=json.loads(text), latency_ms=latency_ms)
        verdict = check_reply(text, prepared.validator)
        if not verdict.ok:
            log.error("record %s step %s: %s returned %s", scope.key, step.id, step.call, verdict.problems)
            problem = f"{step.call} returned a value that does not match `schema`: {verdict.problems}"
            return _failed(step, problem, FailureKind.SCHEMA_MISMATCH)
        return StepResult(step.id, Status.OK, output=verdict.value, latency_ms=latency_ms)

    def _arguments(self, step: CodeStep, value: Any, location: tuple, context: Mapping[str, Any]) -> Any:
        """`args` with every string rendered (a lone `{{ expression }}` keeps its type), in plain dicts and lists."""
        if isinstance(value, str):
            return self._renderer.value(step, arg_field(location), context)
        if isinstance(value, Mapping):
            return {key: self._arguments(step, item, (*location, key), context) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._arguments(step, item, (*location, index), context) for index, item in enumerate(value)]
        return thaw(value)


def _prepare(step: CodeStep, folder: Path, path: str, source: SourceMap) -> _Prepared:
    def stop(message: str, field: str = "call") -> SpecError:
        written = ("steps", step.id, *field.split(".", 1))  # `args.x` as written; else the line of `call`
        by_key = field != "call" and written in source.keys
        line, column = source.keys[written] if by_key else source.where(("steps", step.id, "call"))
        return SpecError(f"step '{step.id}': {message}", path=path, line=line, column=column, field=field)

    try:
        function = import_function(step.call, folder)
    except LookupProblem as exc:
        raise stop(str(exc)) from None
    except (Exception, SystemExit) as exc:  # one line names the file and line; the traceback only with -v
        log.info("step '%s': importing module '%s' raised", step.id, step.module_name, exc_info=exc)
        raise stop(import_failure(step.module_name, exc)) from None
    parameters = runtime_parameters(function)
    if parameters is not None:
        problems = argument_problems(parameters, step.args.keys())
        if problems:
            name, problem = problems[0]
            field = f"args.{name}" if name else "args"
            raise stop(f"`{field}`: {problem} ({step.call})", field)
    schema = thaw(step.schema) if step.schema is not None else None
    validator = compile_validator(schema) if schema is not None else None
    return _Prepared(function, inspect.iscoroutinefunction(function), validator)


async def _in_thread(prepared: _Prepared, kwargs: dict[str, Any]) -> Any:
    """A plain function in a daemon thread of its own: one that outlives its `timeout_s` is left to finish
    (Python cannot stop a thread), its result thrown away, and it never holds up the process's exit."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def call() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (context.run(prepared.function, **kwargs), None)
        except BaseException as exc:  # handed to the loop: the step fails with code_error there
            outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits for this result any more
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=call, name="pipeline-code-step", daemon=True).start()
    return await future


def _raised(step: CodeStep, scope: Scope, error: BaseException) -> StepResult:
    kind = type(error).__name__
    log.error("record %s step %s: %s raised %s", scope.key, step.id, step.call, kind, exc_info=error)
    return _failed(step, f"{step.call} raised {kind}")


def _failed(step: CodeStep, message: str, kind: str = FailureKind.CODE_ERROR) -> StepResult:
    return StepResult(step.id, Status.FAILED, error=FailureSummary(kind=kind, step=step.id, message=message))
