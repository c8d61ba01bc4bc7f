"""The Python API: `load_pipeline(path)` -> Pipeline; `await pipeline.run(record, user_id=...)`.

This is where the environment is read and the pieces are wired: client -> executor -> store.
The CLI uses exactly this.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from .catalog import EMPTY_CATALOG, Catalog, cache_path_for, load_catalog
from .client import DEFAULT_BASE_URL, OpenRouterClient
from .errors import InputError, RunStopped
from .executor import Executor, Hooks
from .graph import StepGraph, build_graph
from .render import Renderer
from .results import CostEvent, RecordResult, StepResult
from .spec import PipelineSpec, load_spec, thaw
from .store import DEFAULT_DB, SQLiteStore
from .validate import compile_validator


@dataclass(frozen=True)
class Settings:
    """Everything a run takes from outside; `from_env` reads the variables of DESIGN.md §3."""

    api_key: str | None = None
    base_url: str = DEFAULT_BASE_URL
    db: str | None = DEFAULT_DB  # None: record nothing
    app_url: str | None = None
    app_name: str | None = None
    models_cache: bool = True
    max_connections: int = 100
    backoff_base_s: float = 0.5  # transport retries wait ~base * 2**n with full jitter, capped
    backoff_max_s: float = 30.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        environ = os.environ if environ is None else environ
        settings = cls(
            api_key=environ.get("OPENROUTER_API_KEY") or None,
            base_url=environ.get("OPENROUTER_BASE_URL") or DEFAULT_BASE_URL,
            db=environ.get("PIPELINE_DB") or DEFAULT_DB,
            app_url=environ.get("PIPELINE_APP_URL") or None,
            app_name=environ.get("PIPELINE_APP_NAME") or None,
        )
        return replace(settings, **{key: value for key, value in overrides.items() if value is not None})

    def __repr__(self) -> str:  # the key never shows up in a traceback or a log line
        return f"Settings(base_url={self.base_url!r}, db={self.db!r}, api_key={'set' if self.api_key else 'unset'})"


def load_pipeline(path: str | Path) -> Pipeline:
    """Load and check a pipeline file; raises SpecError naming the file and line."""
    spec = load_spec(path)
    return Pipeline(spec, build_graph(spec))


class Pipeline:
    def __init__(self, spec: PipelineSpec, graph: StepGraph) -> None:
        self.spec = spec
        self.graph = graph
        self.renderer = Renderer(spec, graph)
        schema = thaw(spec.input_schema) if spec.input_schema is not None else None
        self._input_validator = compile_validator(schema) if schema is not None else None

    @property
    def name(self) -> str:
        return self.spec.name

    def check_input(self, record: Any, *, key: str = "1") -> dict[str, Any]:
        if not isinstance(record, dict):
            raise InputError(f"record {key}: an input record must be a JSON object, not {type(record).__name__}")
        if self._input_validator is not None:
            errors = sorted(self._input_validator.iter_errors(record), key=lambda error: list(error.absolute_path))
            if errors:
                problems = "; ".join(
                    f"{'.'.join(str(part) for part in error.absolute_path) or 'record'}: {error.message}"
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
    ) -> Session:
        return Session(
            self, settings or Settings.from_env(), transport=transport, user_id=user_id, run_id=run_id, hooks=hooks
        )

    async def run(
        self,
        record: Mapping[str, Any],
        user_id: str | None = None,
        *,
        settings: Settings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        key: str = "1",
    ) -> RecordResult:
        """Run one record; costs go to the store named by the settings (PIPELINE_DB by default)."""
        async with self.session(settings, transport=transport, user_id=user_id) as session:
            return await session.run(record, key=key)


class Session:
    """One run: one HTTP client, one catalogue, one store connection, one run id."""

    def __init__(self, pipeline: Pipeline, settings: Settings, *, transport, user_id, run_id, hooks) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.user_id = user_id
        self.run_id = run_id or f"run-{uuid.uuid4().hex[:12]}"
        self._transport = transport
        self._extra_hooks = hooks
        self._client: OpenRouterClient | None = None
        self._store: SQLiteStore | None = None
        self._executor: Executor | None = None
        self.catalog: Catalog = EMPTY_CATALOG
        self.records_ok = 0
        self.records_failed = 0
        self.stopped: RunStopped | None = None

    async def __aenter__(self) -> Session:
        settings = self.settings
        self._client = OpenRouterClient(
            api_key=settings.api_key or "",
            base_url=settings.base_url,
            transport=self._transport,
            app_url=settings.app_url,
            app_name=settings.app_name,
            max_connections=settings.max_connections,
            backoff_base_s=settings.backoff_base_s,
            backoff_max_s=settings.backoff_max_s,
        )
        try:
            cache = cache_path_for(settings.base_url) if settings.models_cache else None
            self.catalog = await load_catalog(self._client, cache)
            if settings.db is not None:
                self._store = SQLiteStore(settings.db)
                self._store.start_run(self.run_id, self.pipeline.name, self.pipeline.spec.path, self.user_id)
        except BaseException:
            await self._close()
            raise
        self._executor = Executor(
            self.pipeline.spec,
            self.pipeline.graph,
            self.pipeline.renderer,
            self._client,
            self.catalog,
            run_id=self.run_id,
            hooks=Hooks(on_cost=self._on_cost, on_step=self._on_step),
        )
        return self

    async def __aexit__(self, exc_type, exc, traceback) -> None:
        if isinstance(exc, RunStopped):
            self.stopped = exc
        status = "stopped" if self.stopped else ("failed" if exc is not None or self.records_failed else "ok")
        if self._store is not None:
            self._store.finish_run(self.run_id, status, self.records_ok, self.records_failed)
        await self._close()

    async def _close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        if self._store is not None:
            self._store.close()

    def _on_cost(self, event: CostEvent) -> None:
        if self._store is not None:
            self._store.add_cost(event)
        if self._extra_hooks is not None:
            self._extra_hooks.on_cost(event)

    def _on_step(self, record_key: str, result: StepResult) -> None:
        if self._store is not None:
            self._store.add_step(self.run_id, record_key, result)
        if self._extra_hooks is not None:
            self._extra_hooks.on_step(record_key, result)

    async def run(self, record: Mapping[str, Any], *, key: str = "1") -> RecordResult:
        checked = self.pipeline.check_input(record, key=key)
        result = await self._executor.run_record(checked, key=key, user_id=self.user_id)
        if result.status == "ok":
            self.records_ok += 1
        else:
            self.records_failed += 1
        if self._store is not None:
            self._store.add_record(result)
        return result
