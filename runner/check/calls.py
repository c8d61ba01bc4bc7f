"""`pipeline validate`'s rules for code steps: the module named by `call` exists (next to the pipeline file,
then on sys.path), defines the function, and the function takes the `args` given. Read from the source with
`ast`: validating never imports or runs the pipeline's code."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..errors import SpecError
from ..spec.code import CodeStep
from ..spec.model import PipelineSpec
from ..spec.pymodules import Compiled, LookupProblem, argument_problems, read_function

# (severity, message, file, line, column, step): the fields of findings.Finding, which wraps them.
Problem = tuple[str, str, str, int | None, int | None, str]


def code_step_problems(spec: PipelineSpec, step: CodeStep) -> Iterator[Problem]:
    folder = Path(spec.path).resolve().parent
    line, column = spec.source.where(("steps", step.id, "call"))

    def at_call(severity: str, message: str) -> Problem:
        return severity, f"step '{step.id}': `call` {step.call}: {message}", spec.path, line, column, step.id

    try:
        signature = read_function(step.call, folder)
    except Compiled as exc:
        yield at_call("warning", f"{exc}, so its function and arguments cannot be checked without importing it")
        return
    except LookupProblem as exc:
        yield at_call("error", str(exc))
        return
    except SpecError as exc:
        yield "error", f"step '{step.id}': {exc.reason}", exc.path or spec.path, exc.line, None, step.id
        return
    if not signature.checkable:
        return  # bound by an import, an assignment or a decorator: its parameters show only when it runs
    for name, problem in argument_problems(signature.parameters or (), step.args.keys()):
        location = ("steps", step.id, "args", name) if name else ("steps", step.id, "args")
        where = spec.source.where(location, key=True)
        field = f"args.{name}" if name else "args"
        message = f"step '{step.id}': `{field}`: {problem} ({step.call} is defined at {signature.where})"
        yield "error", message, spec.path, where[0], where[1], step.id
