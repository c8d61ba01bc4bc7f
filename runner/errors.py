"""Every failure the runner reports, in one tree rooted in PipelineError.

    PipelineError                     exit_code 1
    ├── SpecError                     exit_code 2  the pipeline file is wrong (file, line, column, field)
    ├── InputError                    exit_code 2  an input record does not match the pipeline's `input`
    ├── UsageError                    exit_code 2  a command-line value cannot be used
    ├── RunStopped                    exit_code 3  no further call may be made in this run
    │   ├── ConfigurationError                     missing API key, unusable settings
    │   ├── AuthenticationError                    HTTP 401
    │   ├── CreditsExhausted                       HTTP 402
    │   ├── BudgetExceeded                         the next request could pass --max-cost
    │   └── OutputError                            --output cannot be written (disk full, closed pipe)
    ├── StoreError                    exit_code 1  the database could not be read or written
    │   └── DatabaseUnavailable       exit_code 3  it cannot be opened: a folder, not SQLite, unknown role or database
    ├── CallError                     exit_code 1  one model call failed (raised inside a step)
    │   ├── TransientError                         429/408/5xx/timeouts/dropped connections, retries spent
    │   ├── NoEndpointsError                       404: no provider can serve the parameters
    │   └── RequestRejected                        400, or 403 moderation: the step fails at once
    ├── RenderError                   exit_code 1  a template failed at run time (undefined, sandbox)
    ├── SynthesisError                exit_code 1  no value satisfying a schema could be made (mock, dry run)
    └── (testing/cassette.py) CassetteMiss is a RunStopped: a replayed request the cassette does not hold

Errors carry their context as attributes; `str()` gives the message a user reads.
Raw provider text stays in the logs: a FailureSummary is what goes into outputs.
"""

from __future__ import annotations

from dataclasses import dataclass


class PipelineError(Exception):
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SpecError(PipelineError):
    """The pipeline file (or a file it points at) is invalid; printed as `file:line:col: message`."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.field = field
        location = path or "<pipeline>"
        if line is not None:
            location += f":{line}"
            if column is not None:
                location += f":{column}"
        super().__init__(f"{location}: {message}")
        self.reason = message


class SpecErrors(SpecError):
    """Several load errors found in one pass, so the user can fix them all at once."""

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = tuple(errors)
        first = errors[0]
        super().__init__(first.reason, path=first.path, line=first.line, column=first.column, field=first.field)
        self.message = "\n".join(str(error) for error in errors)
        self.args = (self.message,)


class InputError(PipelineError):
    exit_code = 2


class UsageError(PipelineError):
    exit_code = 2


class RunStopped(PipelineError):
    exit_code = 3
    step: str | None = None  # the step that was running, when one was


class ConfigurationError(RunStopped):
    pass


class AuthenticationError(RunStopped):
    pass


class CreditsExhausted(RunStopped):
    pass


class BudgetExceeded(RunStopped):
    """The next request could take spend past --max-cost, so it was not sent."""


class OutputError(RunStopped):
    """Output lines can no longer be written; finished records are kept in the database."""


class RenderError(PipelineError):
    """A template failed at run time (an undefined variable, a sandbox violation)."""

    kind = "render_error"

    def __init__(self, message: str, *, step: str | None) -> None:
        super().__init__(message)
        self.step = step


class SynthesisError(PipelineError):
    """No value satisfying a schema could be made: the fake's reply or a dry run's stand-in."""

    def __init__(self, pointer: str, problem: str, closest=None) -> None:
        super().__init__(f"cannot make a value for the schema at {pointer}: {problem}")
        self.pointer = pointer
        self.problem = problem
        self.closest = closest  # the last candidate tried, which the schema rejects


class StoreError(PipelineError):
    pass


class DatabaseUnavailable(StoreError):
    """--db / PIPELINE_DB names nothing usable: a configuration stop, before any run is created."""

    exit_code = 3


class CallError(PipelineError):
    """One request to OpenRouter failed; `kind` is the safe, stable name of the failure."""

    kind = "error"

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        status: int | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.model = model
        self.status = status
        self.attempts = attempts


class TransientError(CallError):
    kind = "unavailable"


class NoEndpointsError(CallError):
    kind = "no_endpoints"


class RequestRejected(CallError):
    kind = "rejected"


@dataclass(frozen=True)
class FailureSummary:
    """What a record's output may say about a failure: no provider text, no prompt.

    `message` is only ever the runner's own words (an input validation error, a template's failure, why a
    reply was refused), never a provider's.
    """

    kind: str
    step: str
    attempts: int = 0
    models: tuple[str, ...] = ()
    message: str | None = None

    def as_dict(self) -> dict:
        summary = {"kind": self.kind, "step": self.step, "attempts": self.attempts, "models": list(self.models)}
        if self.message is not None:
            summary["message"] = self.message
        return summary
