"""pipeline: declarative prompt pipelines on OpenRouter.

`__all__` is the documented Python API (README, "Python API"; tests/test_api_surface.py checks both
agree): loading, running, results and their status words, and the errors a caller catches.
"""

from .api import Pipeline, load_pipeline
from .errors import (
    AuthenticationError,
    BudgetExceeded,
    CallError,
    ConfigurationError,
    CreditsExhausted,
    DatabaseUnavailable,
    FailureSummary,
    InputError,
    MissingAPIKey,
    OutputError,
    PipelineError,
    RenderError,
    RunMismatch,
    RunNotFound,
    RunStopped,
    SpecError,
    StoreError,
    UnpricedModels,
    UsageError,
)
from .outcomes import FailureKind, Outcome, RunStatus, Status
from .run.hooks import Hooks
from .run.results import RecordResult, StepResult
from .run.streaming import RecordFinished, StepFinished, StepStarted, TextDelta
from .session import Session
from .settings import RunOptions, Settings

__all__ = [  # sorted; README's Python API section groups them
    "AuthenticationError",
    "BudgetExceeded",
    "CallError",
    "ConfigurationError",
    "CreditsExhausted",
    "DatabaseUnavailable",
    "FailureKind",
    "FailureSummary",
    "Hooks",
    "InputError",
    "MissingAPIKey",
    "Outcome",
    "OutputError",
    "Pipeline",
    "PipelineError",
    "RecordFinished",
    "RecordResult",
    "RenderError",
    "RunMismatch",
    "RunNotFound",
    "RunOptions",
    "RunStatus",
    "RunStopped",
    "Session",
    "Settings",
    "SpecError",
    "Status",
    "StepFinished",
    "StepResult",
    "StepStarted",
    "StoreError",
    "TextDelta",
    "UnpricedModels",
    "UsageError",
    "load_pipeline",
]
