"""Every failure the runner reports, in one tree rooted in PipelineError.

    PipelineError                     exit_code 1
    ├── SpecError                     exit_code 2  the pipeline file is wrong (file, line, column, field)
    │   └── SpecErrors                             several of them, found in one pass
    ├── InputError                    exit_code 2  an input record does not match the pipeline's `input`
    ├── UsageError                    exit_code 2  a value given to a command or a call cannot be used
    │   ├── RunNotFound                            no run with this id to resume (run_id, database)
    │   └── RunMismatch                            the run is another pipeline's, or of the other endpoint kind
    ├── RunStopped                    exit_code 3  no further call may be made in this run
    │   ├── ConfigurationError                     unusable settings
    │   │   ├── MissingAPIKey                      no OpenRouter API key
    │   │   └── UnpricedModels                     a cost cap, but the catalogue has no price for some models
    │   ├── AuthenticationError                    HTTP 401
    │   ├── CreditsExhausted                       HTTP 402
    │   ├── BudgetExceeded                         the next request could pass the cap (cap_usd, spent_usd, next_usd)
    │   ├── CassetteMiss                           a replayed request the cassette does not hold (`pipeline test`)
    │   └── OutputError                            the output cannot be written (disk full, closed pipe)
    ├── StoreError                    exit_code 1  the database could not be read or written
    │   └── DatabaseUnavailable       exit_code 3  it cannot be opened: a folder, not SQLite, unknown role or database
    ├── CallError                     exit_code 1  one model call failed (raised inside a step)
    │   ├── TransientError                         429/408/5xx/timeouts/dropped connections, retries spent
    │   ├── NoEndpointsError                       404: no provider can serve the parameters
    │   └── RequestRejected                        400, or 403 moderation: the step fails at once
    ├── RenderError                   exit_code 1  a template failed at run time (undefined, sandbox)
    ├── AttachmentError               exit_code 1  a record's attachment cannot be sent (outside the files root, ...)
    └── SynthesisError                exit_code 1  no value satisfying a schema could be made (mock, dry run)

Errors carry their context as attributes; `str()` gives the message a user reads.
Raw provider text stays in the logs: a FailureSummary is what goes into outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from .outcomes import FailureKind


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


class RunNotFound(UsageError):
    """No run with this id in the database, so there is nothing to resume."""

    def __init__(self, run_id: str, database: str) -> None:
        super().__init__(f"no run {run_id} in {database}")
        self.run_id = run_id
        self.database = database


class RunMismatch(UsageError):
    """The run exists but cannot be continued by this one: another pipeline's run (`run_pipeline` is set),
    or a run against the other kind of endpoint (`run_mock` says which it was: the fake's or real)."""

    def __init__(
        self,
        run_id: str,
        *,
        resuming: bool,
        pipeline: str,
        run_pipeline: str | None = None,
        run_mock: bool | None = None,
    ) -> None:
        if run_pipeline is not None:
            reason = f"that run belongs to pipeline '{run_pipeline}', not '{pipeline}'"
        else:
            reason = "that run was made against the fake (mock)" if run_mock else "that run was made against a live API"
        super().__init__(f"run {run_id}: {reason}")
        self.run_id = run_id
        self.resuming = resuming  # True: resuming it; False: starting or joining a run by that id
        self.pipeline = pipeline
        self.run_pipeline = run_pipeline
        self.run_mock = run_mock


class RunStopped(PipelineError):
    exit_code = 3
    step: str | None = None  # the step that was running, when one was


class ConfigurationError(RunStopped):
    pass


class MissingAPIKey(ConfigurationError):
    """No OpenRouter API key was given (OPENROUTER_API_KEY, or `Settings.api_key`)."""

    def __init__(self) -> None:
        super().__init__("OPENROUTER_API_KEY is not set")


class UnpricedModels(ConfigurationError):
    """A cost cap was asked for, but the model catalogue has no price for these models."""

    def __init__(self, models: tuple[str, ...]) -> None:
        super().__init__(
            f"a cost cap needs every model's price, and the model catalogue has none for {', '.join(models)}"
        )
        self.models = tuple(models)


class AuthenticationError(RunStopped):
    pass


class CreditsExhausted(RunStopped):
    pass


class BudgetExceeded(RunStopped):
    """The next request could take the run's spend past its cap, so it was not sent."""

    def __init__(self, cap_usd: float, spent_usd: float, next_usd: float) -> None:
        super().__init__(
            f"the cost cap of ${cap_usd:.4f} is reached: ${spent_usd:.6f} spent, the next request could cost up to "
            f"${next_usd:.6f}; finished records are kept"
        )
        self.cap_usd = cap_usd
        self.spent_usd = spent_usd
        self.next_usd = next_usd


class CassetteMiss(RunStopped):
    """A request in replay mode that the cassette does not hold: the pipeline changed since recording."""

    def __init__(self, message: str, *, model: str | None, cassette: str) -> None:
        super().__init__(message)
        self.model = model
        self.cassette = cassette


class OutputError(RunStopped):
    """Output lines can no longer be written; finished records are kept in the database."""


class RenderError(PipelineError):
    """A template failed at run time (an undefined variable, a sandbox violation)."""

    kind = FailureKind.RENDER_ERROR

    def __init__(self, message: str, *, step: str | None) -> None:
        super().__init__(message)
        self.step = step


class AttachmentError(PipelineError):
    """An attachment a record names cannot be sent: a path outside the files root, a missing or oversize
    file, an unknown type, a bad data: URL. The record fails and nothing of the step is sent."""

    kind = FailureKind.ATTACHMENT_ERROR

    def __init__(self, message: str, *, step: str | None = None) -> None:
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

    kind = FailureKind.ERROR

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
    kind = FailureKind.UNAVAILABLE


class NoEndpointsError(CallError):
    kind = FailureKind.NO_ENDPOINTS


class RequestRejected(CallError):
    kind = FailureKind.REJECTED


@dataclass(frozen=True)
class FailureSummary:
    """What a record's output may say about a failure: no provider text, no prompt.

    `message` is only ever the runner's own words (an input validation error, a template's failure, why a
    reply was refused), never a provider's.
    """

    kind: str  # a FailureKind
    step: str
    attempts: int = 0
    models: tuple[str, ...] = ()
    message: str | None = None

    def as_dict(self) -> dict:
        summary = {"kind": self.kind, "step": self.step, "attempts": self.attempts, "models": list(self.models)}
        if self.message is not None:
            summary["message"] = self.message
        return summary
