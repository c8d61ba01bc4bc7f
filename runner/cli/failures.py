"""Errors in the command line's words: the lower layers raise domain errors with attributes
(`RunNotFound(run_id)`, `BudgetExceeded(cap_usd, spent_usd, next_usd)`, `MissingAPIKey()`), and
`describe` phrases them with the flags a user of `pipeline` passes. `PipelineGroup` turns every
`PipelineError` into a click exception inside click, keeping its exit code, so `CliRunner` and the
installed command see the same exit code and the same `error: ...` line on stderr."""

from __future__ import annotations

from typing import IO

import click

from ..errors import (
    BudgetExceeded,
    FailureSummary,
    MissingAPIKey,
    PipelineError,
    RunMismatch,
    RunNotFound,
    SpecError,
    UnpricedModels,
)


def describe(error: PipelineError) -> str:
    """The message of `error` for a user of the command line, naming the flags to change."""
    match error:
        case RunNotFound():
            return f"--resume {error.run_id}: no such run in {error.database}; `pipeline runs` lists them"
        case RunMismatch():
            flag = "--resume" if error.resuming else "--run-id"
            if error.run_pipeline is not None:
                owner = f"pipeline '{error.run_pipeline}', not '{error.pipeline}'"
                return f"{flag} {error.run_id}: that run belongs to {owner}"
            kind = "a --mock run: add --mock" if error.run_mock else "a live run: drop --mock"
            return f"{flag} {error.run_id}: that run is {kind} to continue it"
        case MissingAPIKey():
            return (
                "OPENROUTER_API_KEY is not set: export it to call OpenRouter, or add --mock to run offline "
                "against the built-in fake"
            )
        case UnpricedModels():
            return (
                f"--max-cost needs every model's price, and the model catalogue has none for {', '.join(error.models)}"
            )
        case BudgetExceeded():
            return (
                f"--max-cost ${error.cap_usd:.4f} reached: ${error.spent_usd:.6f} spent, the next request could cost "
                f"up to ${error.next_usd:.6f}; finished records are kept, resume with a higher --max-cost"
            )
    return str(error)


def step_failed(error: FailureSummary) -> str:
    """The last line of a failed `--input` run: the step and kind, and the attempts and models a step that
    called models made (a code step, or a step refused before any call, made none: that is left out)."""
    if not error.attempts and not error.models:
        said = f": {error.message}" if error.message else ""
        return f"error: step '{error.step}' failed ({error.kind}){said}. Details are in the log above."
    return (
        f"error: step '{error.step}' failed ({error.kind}) after {error.attempts} billed attempt(s); "
        f"models tried: {', '.join(error.models) or 'none'}. Details are in the log above."
    )


class CommandFailed(click.ClickException):
    """A PipelineError inside click: its exit code, and `error: <message>` (a SpecError as `file:line: ...`)."""

    def __init__(self, error: PipelineError) -> None:
        super().__init__(describe(error))
        self.error = error
        self.exit_code = error.exit_code

    def show(self, file: IO | None = None) -> None:
        text = self.message if isinstance(self.error, SpecError) else f"error: {self.message}"
        click.echo(text, file=file, err=True)


class Interrupted(click.ClickException):
    """Ctrl-C outside a run's own handling: `aborted` and the shell's code for SIGINT."""

    exit_code = 130

    def show(self, file: IO | None = None) -> None:
        click.echo(self.message, file=file, err=True)


class PipelineGroup(click.Group):
    """The `pipeline` group: a PipelineError raised by any command becomes a CommandFailed."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PipelineError as exc:
            raise CommandFailed(exc) from exc
        except KeyboardInterrupt:
            raise Interrupted("aborted") from None
