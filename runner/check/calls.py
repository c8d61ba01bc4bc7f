"""`pipeline validate`'s rules for code steps: the module named by `call` exists (next to the pipeline file,
then on sys.path), defines the function, and the function takes the `args` given. Read from the source with
`ast`: validating never imports or runs the pipeline's code."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..errors import SpecError
from ..plan.pyfuncs import NEXT_TO_PIPELINE, ON_SYS_PATH, argument_problems, find_module, read_signature
from ..spec.code import CodeStep
from ..spec.model import PipelineSpec

# (severity, message, file, line, column, step): the fields of findings.Finding, which wraps them.
Problem = tuple[str, str, str, int | None, int | None, str]


def code_step_problems(spec: PipelineSpec, step: CodeStep) -> Iterator[Problem]:
    folder = Path(spec.path).resolve().parent
    line, column = spec.source.where(("steps", step.id, "call"))

    def at_call(severity: str, message: str) -> Problem:
        return severity, f"step '{step.id}': `call` {step.call}: {message}", spec.path, line, column, step.id

    found = find_module(step.module_name, folder)
    if found is None:
        yield at_call("error", f"no module '{step.module_name}' {NEXT_TO_PIPELINE} ({folder}) or {ON_SYS_PATH}")
        return
    if not found.readable:
        yield at_call(
            "warning",
            f"module '{step.module_name}' is compiled ({found.path or 'built-in'}), so its function and arguments "
            "cannot be checked without importing it",
        )
        return
    try:
        signature = read_signature(found, step.function_name)
    except SpecError as exc:
        yield "error", f"step '{step.id}': {exc.reason}", exc.path or spec.path, exc.line, None, step.id
        return
    if signature is None:
        yield at_call("error", f"module '{step.module_name}' ({found.path}) has no function '{step.function_name}'")
        return
    if not signature.checkable:
        return  # bound by an import, an assignment or a decorator: its parameters show only when it runs
    for name, problem in argument_problems(signature.parameters or (), step.args.keys()):
        location = ("steps", step.id, "args", name) if name else ("steps", step.id, "args")
        where = spec.source.where(location, key=True)
        field = f"args.{name}" if name else "args"
        defined = f"{signature.path}:{signature.line}"
        message = f"step '{step.id}': `{field}`: {problem} ({step.call} is defined at {defined})"
        yield "error", message, spec.path, where[0], where[1], step.id
