"""`--otel` for `pipeline run`: whether to trace (the flag or PIPELINE_OTEL), whether spans carry the text
(`--otel-content` or OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT), and the tracer, imported only
then so that the core never needs the `otel` extra."""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..run.hooks import Hooks, fan_out

if TYPE_CHECKING:
    from ..api import Pipeline
    from ..report.tracing import RunTracer

TRUE = ("1", "true", "yes", "on")
INSTALL_HINT = "pip install 'pipeline-runner[otel]'"


def tracing_wanted(flag: bool) -> bool:
    return flag or os.environ.get("PIPELINE_OTEL", "").strip().lower() in TRUE


def content_wanted(flag: bool) -> bool:
    variable = os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "")
    return flag or variable.strip().lower() in TRUE


def check_installed() -> None:
    """Before anything runs: tracing asked for without the extra is a configuration stop naming the fix."""
    try:
        for module in ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter"):
            importlib.import_module(module)
    except ImportError as exc:
        raise ConfigurationError(
            f"--otel (or PIPELINE_OTEL) needs OpenTelemetry, which is not installed ({exc.name}): {INSTALL_HINT}"
        ) from None


class Tracing:
    """One run's tracer and its provider: `hooks` joins it to the run's others, `start` opens the run's
    span, `finish` closes it and sends what is still queued."""

    def __init__(self, pipeline: Pipeline, base_url: str, *, content: bool) -> None:
        from ..report.tracing import RunTracer, otlp_tracer

        tracer, self._provider = otlp_tracer()
        self.tracer: RunTracer = RunTracer(tracer, pipeline.spec, content=content, base_url=base_url)

    def hooks(self, others: Hooks | None) -> Hooks:
        return fan_out(others, self.tracer)

    def start(self, session: Any) -> None:
        self.tracer.start_run(session.run_id)

    def finish(self, session: Any) -> None:
        totals = session.totals
        stopped = str(session.stopped) if session.stopped is not None else None
        try:
            self.tracer.end_run(
                records_ok=totals.records_ok,
                records_failed=totals.records_failed,
                cost_usd=totals.cost_usd,
                stopped=stopped,
            )
        finally:
            self._provider.shutdown()


def add_tracing(hooks: Hooks | None, tracing: Tracing | None) -> Hooks | None:
    return tracing.hooks(hooks) if tracing is not None else hooks
