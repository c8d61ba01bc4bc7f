"""The Python API: `load_pipeline(path)` -> Pipeline; `await pipeline.run(record, user_id=...)`,
`async for event in pipeline.stream(record)`.

A Pipeline is the checked file, its graph and its renderer; each run opens a Session (session.py),
where the pieces are wired. The CLI uses exactly this.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

from .chat.verdict import compile_validator
from .errors import InputError
from .plan.graph import StepGraph, build_graph
from .plan.render import Renderer
from .run.hooks import Hooks
from .run.results import RecordResult
from .run.streaming import EventQueue, StreamEvent
from .session import Session
from .settings import RunOptions, Settings
from .spec.load import load_spec
from .spec.model import PipelineSpec, thaw
from .spec.strict import json_type, validation_problem


def load_pipeline(path: str | Path) -> Pipeline:
    """Load and check a pipeline file; raises SpecError naming the file and line."""
    spec = load_spec(path)
    return Pipeline(spec, build_graph(spec))


class Pipeline:
    """The checked file, its graph, its compiled templates. It pickles: the file and the graph travel,
    the templates and the input validator are compiled again where it lands."""

    def __init__(self, spec: PipelineSpec, graph: StepGraph) -> None:
        self.spec = spec
        self.graph = graph
        self.renderer = Renderer(spec, graph)
        schema = thaw(spec.input_schema) if spec.input_schema is not None else None
        self._input_validator = compile_validator(schema) if schema is not None else None

    def __getstate__(self) -> tuple[PipelineSpec, StepGraph]:
        return self.spec, self.graph

    def __setstate__(self, state: tuple[PipelineSpec, StepGraph]) -> None:
        self.__init__(*state)

    @property
    def name(self) -> str:
        return self.spec.name

    def check_input(self, record: Any, *, key: str = "1") -> dict[str, Any]:
        if not isinstance(record, dict):
            raise InputError(f"record {key}: an input record must be a JSON object, not {json_type(record)}")
        if self._input_validator is not None:
            errors = sorted(self._input_validator.iter_errors(record), key=lambda error: list(error.absolute_path))
            if errors:
                problems = "; ".join(
                    f"{'.'.join(str(part) for part in error.absolute_path) or 'record'}: {validation_problem(error)}"
                    for error in errors[:5]
                )
                raise InputError(f"record {key} does not match the `input` schema of {self.spec.path}: {problems}")
        return record

    def session(
        self,
        settings: Settings | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        user_id: str | None = None,
        run_id: str | None = None,
        hooks: Hooks | None = None,
        options: RunOptions | None = None,
    ) -> Session:
        return Session(
            self,
            settings or Settings.from_env(),
            transport=transport,
            user_id=user_id,
            run_id=run_id,
            hooks=hooks,
            options=options,
        )

    async def run(
        self,
        record: Mapping[str, Any],
        user_id: str | None = None,
        *,
        settings: Settings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        key: str | int = 1,
        files_root: str | Path | None = None,
    ) -> RecordResult:
        """Run one record; costs go to the store named by the settings (PIPELINE_DB by default). Local
        attachments are read from below `files_root` (default: the current folder)."""
        options = RunOptions(files_root=str(files_root) if files_root is not None else None)
        async with self.session(settings, transport=transport, user_id=user_id, options=options) as session:
            return await session.run(record, key=key)

    async def stream(
        self,
        record: Mapping[str, Any],
        user_id: str | None = None,
        *,
        settings: Settings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        key: str | int = 1,
        use_cache: bool = True,
    ) -> AsyncIterator[StreamEvent]:
        """Run one record with its text steps streamed: StepStarted, TextDelta and StepFinished events as
        they happen, RecordFinished (with the result `run` returns) last. Leaving the loop early cancels the run."""
        events = EventQueue()
        options = RunOptions(stream=True, use_cache=use_cache)
        session = self.session(settings, transport=transport, user_id=user_id, hooks=events, options=options)
        async with session:
            async for event in events.events(session.run(record, key=key)):
                yield event

    async def run_many(
        self,
        records: Iterable[Any] | AsyncIterable[Any],
        *,
        concurrency: int = 16,
        user_id: str | None = None,
        ordered: bool = False,
        settings: Settings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_cost_usd: float | None = None,
        use_cache: bool = True,
        files_root: str | Path | None = None,
    ) -> AsyncIterator[RecordResult]:
        """Run a stream of records (dicts, or InputItems with keys) in one session; yields as they finish."""
        options = RunOptions(
            concurrency=concurrency,
            use_cache=use_cache,
            max_cost_usd=max_cost_usd,
            files_root=str(files_root) if files_root is not None else None,
        )
        async with self.session(settings, transport=transport, user_id=user_id, options=options) as session:
            async for result in session.run_many(records, ordered=ordered):
                yield result
