"""pipeline: declarative prompt pipelines on OpenRouter."""

from .api import Pipeline, load_pipeline
from .errors import PipelineError
from .run.results import RecordResult, StepResult
from .session import Session
from .settings import Settings

__all__ = ["Pipeline", "PipelineError", "RecordResult", "Session", "Settings", "StepResult", "load_pipeline"]
