"""pipeline: declarative prompt pipelines on OpenRouter."""

from .api import Pipeline, Session, Settings, load_pipeline
from .errors import PipelineError
from .run.results import RecordResult, StepResult

__all__ = ["Pipeline", "PipelineError", "RecordResult", "Session", "Settings", "StepResult", "load_pipeline"]
