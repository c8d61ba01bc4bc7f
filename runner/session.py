"""One run's wiring: the environment's Settings turned into a client, a catalogue, a store and a
budget around a record executor (run/backend.py), for the Python API and the CLI alike. Costs and
steps reach the store and the running totals through hooks (run/hooks.py) the session adds to the
caller's; the session writes each finished record itself, with its input's fingerprint.

A session is meant to live long: open it once and send it every record (a service's requests
included); each `Pipeline.run` call opens, and closes, a session of its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from .chat.batches import BatchClient
from .chat.catalog import EMPTY_CATALOG, Catalog, cache_path_for, load_catalog
from .chat.client import OpenRouterClient
from .chat.flow import RequestGate
from .chat.stream import StreamingClient
from .errors import ConfigurationError, FailureSummary, InputError, RunStopped, UnpricedModels, UsageError
from .outcomes import FailureKind, RunStatus, Status
from .run.afresh import Afresh, afresh_for, serves
from .run.backend import LocalBackend, RecordExecutor
from .run.batching import BatchCollector, BatchCounts
from .run.budget import Budget, SharedBudget
from .run.eventlog import event_log
from .run.files import FilesRoot
from .run.generations import FetchTotals, GenerationFetcher
from .run.hooks import Hooks, fan_out
from .run.inputs import InputItem, aiter_items, record_fingerprint
from .run.record import RecordRunner
from .run.results import CacheEntry, CostEvent, RecordResult, RunTotals, StepResult
from .run.steps import Services
from .settings import RunOptions, Settings
from .spec.model import EMPTY
from .store import Store
from .store.cache import MOCK_ENDPOINT

if TYPE_CHECKING:
    from .api import Pipeline

_log = logging.getLogger(__name__)

# While a record that failed runs again (--retry-failed), what it asks afresh rather than serve from the
# cache (run.afresh). A context variable, so it holds for that record only.
_ASK_AFRESH: ContextVar[Afresh] = ContextVar("ask_afresh", default=Afresh.NOTHING)


class Session:
    """One run: one HTTP client, one catalogue, one store connection, one run id."""

    def __init__(
        self,
        pipeline: Pipeline,
        settings: Settings,
        *,
        transport=None,
        user_id: str | None = None,
        run_id: str | None = None,
        hooks: Hooks | None = None,
        options: RunOptions | None = None,
        executor: Callable[[Session, RecordRunner], RecordExecutor] | None = None,
        gate: RequestGate | None = None,
    ) -> None:
        """`executor` makes the run's backend (default: LocalBackend, this event loop); `gate` replaces the
        request gate (a cluster's shared one). Both are for backends that spread records (runner.cluster)."""
        self.pipeline = pipeline
        self.settings = settings
        self.options = options or RunOptions()
        if self.options.resume and not run_id:
            raise UsageError("resuming needs the run id")
        self.user_id = user_id
        self.run_id = run_id or f"run-{uuid.uuid4().hex[:12]}"
        self.totals = RunTotals()
        self.stopped: RunStopped | None = None
        self.interrupted = False  # set by the caller when it gave up on the run (its output closed, Ctrl-C)
        self.resumed_from: dict[str, Any] | None = None  # the run's row as it was, when resuming
        self.final: dict[str, Any] | None = None  # the run as `pipeline runs` shows it, once finished
        self.catalog: Catalog = EMPTY_CATALOG
        self.gate: RequestGate | None = gate
        self._executor = executor
        self.budget: Budget | SharedBudget | None = None
        self._transport = transport
        self.hooks: Hooks = fan_out(_Recorder(self), hooks, event_log(self.run_id))
        self.backend: RecordExecutor | None = None
        self.batches: BatchCollector | None = None
        self._client: StreamingClient | None = None
        self._store: Store | None = None
        self._flush_scheduled = False
        self.generations: GenerationFetcher | None = None  # --fetch-generations: lookups in the background
        self.generation_totals: FetchTotals | None = None  # what they found, once the run is over

    async def __aenter__(self) -> Session:
        settings, options = self.settings, self.options
        self.gate = self.gate or RequestGate(options.concurrency)
        self._client = StreamingClient(
            api_key=settings.api_key,
            base_url=settings.base_url,
            transport=self._transport,
            app_url=settings.app_url,
            app_name=settings.app_name,
            max_connections=max(settings.max_connections, options.concurrency),
            backoff_base_s=settings.backoff_base_s,
            backoff_max_s=settings.backoff_max_s,
            gate=self.gate,
            generation_wait_s=settings.generation_wait_s,
            require_key=self.pipeline.spec.makes_calls,  # code steps alone call nothing
        )
        try:
            cache = cache_path_for(settings.base_url, settings.cache_dir) if settings.models_cache else None
            if self.pipeline.spec.makes_calls:
                self.catalog = await load_catalog(self._client, cache)
            if settings.db is not None:
                self._store = Store(settings.db, schema=settings.db_schema, endpoint=self.endpoint)
                self._store.mark_abandoned_runs()
                if options.joined:  # a cluster's worker: the driver started the run and finishes it
                    self._store.resumable_run(self.run_id, self.pipeline.name, mock=settings.mock)
                elif options.resume:
                    self.resumed_from = self._store.resume_run(self.run_id, self.pipeline.name, mock=settings.mock)
                else:
                    self._store.start_run(
                        self.run_id, self.pipeline.name, self.pipeline.spec.path, self.user_id, mock=settings.mock
                    )
            if options.max_cost_usd is not None:
                self.budget = self._budget(options.max_cost_usd)
            if options.batch_api:
                self.batches = self._batch_collector()
            if options.fetch_generations and self._store is not None:
                self.generations = GenerationFetcher(self._generation_client, self._write_generation)
        except BaseException:
            await self._close()
            raise
        services = Services(
            spec=self.pipeline.spec,
            graph=self.pipeline.graph,
            renderer=self.pipeline.renderer,
            client=self._client,
            catalog=self.catalog,
            run_id=self.run_id,
            hooks=self.hooks,
            cache=self if self._store is not None else None,
            budget=self.budget,
            stream=self.options.stream,
            files=FilesRoot(options.files_root or ".", options.max_attachment_mb),
            batches=self.batches,
        )
        try:
            records = RecordRunner(services)  # a code step's function that cannot be imported stops here
        except BaseException:
            await self._close()
            raise
        # With batches, a step's requests from many records share them: the window holds two batches' worth.
        window = max(2 * options.batch_size, 2 * options.concurrency, 8) if self.batches is not None else None
        if self._executor is not None:
            self.backend = self._executor(self, records)
        else:
            self.backend = LocalBackend(records, concurrency=options.concurrency, window=window, admit=self.gate.room)
        return self

    def _batch_collector(self) -> BatchCollector:
        options = self.options
        url = self.settings.batch_url or self.settings.base_url.rstrip("/") + "/batches"
        if not url.startswith(("https://", "http://")) or "@" in url.split("/")[2]:
            # never repeated: it may hold a password
            raise ConfigurationError("OPENROUTER_BATCH_URL must be an https:// URL without a user:password@ part")
        collector = BatchCollector(
            BatchClient(self._client, url, backoff_s=self.settings.backoff_base_s),
            run_id=self.run_id,
            catalog=self.catalog,
            lookup=self._client,
            ledger=self._store,
            size=options.batch_size,
            linger_s=options.batch_linger_s,
            poll_s=options.batch_poll_s,
            poll_max_s=options.batch_poll_max_s,
        )
        if options.resume:
            earlier = collector.resume()
            if earlier:
                _log.warning(
                    "run %s: %d batch(es) submitted before will be polled, not submitted again", self.run_id, earlier
                )
        return collector

    def batch_counts(self) -> BatchCounts | None:
        """--batch-api: batches submitted, running and done, and the requests they hold."""
        return self.batches.counts() if self.batches is not None else None

    @property
    def endpoint(self) -> str:
        """Where replies come from, as the response cache labels them."""
        return MOCK_ENDPOINT if self.settings.mock else self.settings.base_url.rstrip("/")

    def _budget(self, max_cost_usd: float) -> Budget | SharedBudget:
        unpriced = sorted(
            {model for step in self.pipeline.spec.steps for model in step.models if model not in self.catalog.models}
        )
        if unpriced:
            raise UnpricedModels(tuple(unpriced))
        if self._store is None:
            return Budget(max_cost_usd=max_cost_usd)
        # In the database, so that workers joining the run (--run-id) share one cap.
        if self.options.joined:  # the driver opened it
            return SharedBudget(self._store, self.run_id)
        self._store.open_budget(self.run_id, max_cost_usd, fresh=self.options.resume)
        return SharedBudget(self._store, self.run_id)

    async def __aexit__(self, exc_type, exc, traceback) -> None:
        if isinstance(exc, RunStopped):
            self.stopped = exc
        if self.stopped:
            status = RunStatus.STOPPED
        elif self.interrupted or exc is not None:  # Ctrl-C, a closed output, a crash: resumable
            status = RunStatus.INTERRUPTED
        elif self.totals.records_failed:
            status = RunStatus.FAILED
        else:
            status = RunStatus.OK
        try:
            await self._settle_generations(finished=exc is None or isinstance(exc, RunStopped))
            if self._store is not None and not self.options.joined:
                self._store.finish_run(self.run_id, status)
                self.final = self._store.run_summary(self.run_id)
        finally:
            await self._close()

    def _generation_client(self, pause) -> OpenRouterClient:
        return self.settings.generation_client(pause, self._transport)

    def _write_generation(self, found) -> None:
        self._store.add_generation(found)
        self._schedule_flush()

    async def _settle_generations(self, *, finished: bool) -> None:
        """Wait for the generation lookups of a run that ended; a crashed or cancelled one leaves them to enrich."""
        if self.generations is None:
            return
        settle = self.generations.drain if finished else self.generations.abandon
        self.generation_totals = await settle()

    async def _close(self) -> None:
        if self.batches is not None:
            await self.batches.aclose()
        if self._client is not None:
            await self._client.aclose()
        if self._store is not None:
            self._store.close()

    def lookup(self, key: str) -> CacheEntry | None:
        """The response cache, as the executor sees it; with --no-cache nothing is found, but replies are kept."""
        afresh = _ASK_AFRESH.get()
        if not self.options.use_cache or afresh is Afresh.EVERYTHING:
            return None
        hit = self._store.cached_reply(key)
        return hit if hit is None or serves(afresh, hit) else None

    def _schedule_flush(self) -> None:
        """Group commit: every reply that arrived in this event-loop iteration goes to disk in one transaction."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._store is not None:
            self._store.flush()

    async def run(self, record: Mapping[str, Any], *, key: str | int = 1) -> RecordResult:
        """One record; an invalid record raises InputError (nothing is called)."""
        checked = self.pipeline.check_input(record, key=str(key))
        resuming = self.options.resume and self._store is not None
        stored = self._store.finished_record(self.run_id, str(key), include_failed=True) if resuming else None
        result = await self._run_record(checked, key, afresh=self._afresh(stored, key))
        result = await self._finish_record(result, record_fingerprint(checked))
        self._flush()
        return result

    async def run_item(self, item: InputItem) -> RecordResult:
        """One record of a batch: an invalid record becomes a failed result and the batch goes on."""
        fingerprint = record_fingerprint(item.record) if item.problem is None and item.record is not None else None
        afresh = Afresh.NOTHING
        if (self.options.resume or self.options.joined) and self._store is not None:
            stored = self._store.finished_record(self.run_id, str(item.key), include_failed=True)
            afresh = self._afresh(stored, item.key)
            if stored is not None and afresh is Afresh.NOTHING and _same_input(stored, fingerprint):
                result = _stored_result(item.key, stored, self.run_id)
                self.totals.add_record(result)
                self.hooks.on_record_end(result)
                return result
            if stored is not None and afresh is Afresh.NOTHING:
                _log.warning("record %s changed since run %s answered it: running it again", item.key, self.run_id)
        problem = item.problem
        if problem is None:
            try:
                record = self.pipeline.check_input(item.record, key=str(item.key))
            except InputError as exc:
                problem = str(exc)
        if problem is not None:
            summary = FailureSummary(kind=FailureKind.INVALID_INPUT, step="input", message=problem)
            return await self._finish_record(
                RecordResult(item.key, Status.FAILED, None, EMPTY, error=summary, run_id=self.run_id),
                fingerprint,
            )
        result = await self._run_record(record, item.key, afresh=afresh)
        return await self._finish_record(result, fingerprint)

    def _afresh(self, stored: Mapping[str, Any] | None, key: str | int) -> Afresh:
        if not (self.options.retry_failed and _failed(stored)):
            return Afresh.NOTHING
        return afresh_for(self.pipeline.spec, stored, self._store.failed_steps(self.run_id, str(key)))

    async def _run_record(self, record: Mapping[str, Any], key: str | int, *, afresh: Afresh) -> RecordResult:
        self.hooks.on_record_start(str(key))
        token = _ASK_AFRESH.set(afresh)
        try:
            return await self.backend.run_record(record, key=key, user_id=self.user_id)
        finally:
            _ASK_AFRESH.reset(token)

    async def _finish_record(self, result: RecordResult, fingerprint: str | None = None) -> RecordResult:
        self.totals.add_record(result)
        if self._store is not None:
            self._store.add_record(result, fingerprint)
        self.hooks.on_record_end(result)
        return result

    def run_many(
        self, records: Iterable[Any] | AsyncIterable[Any], *, ordered: bool = False, threaded_input: bool = False
    ) -> AsyncIterator[RecordResult]:
        """Results as records finish (in input order with `ordered`), through the session's backend."""
        return self._flushed(
            self.backend.run_records(self.run_item, _as_items(records, threaded_input), ordered=ordered)
        )

    async def _flushed(self, batches: AsyncIterator[list[RecordResult]]) -> AsyncIterator[RecordResult]:
        """Every record is on disk before it is reported done: one write for each batch that finished together.

        Closing this stream early (the caller stopped reading) cancels the records in flight at once, so
        nothing is spent or counted after the caller has told the user where the run stands.
        """
        async with contextlib.aclosing(batches):
            async for batch in batches:
                self._flush()
                for result in batch:
                    yield result


def _failed(stored: Mapping[str, Any] | None) -> bool:
    """The record failed in the run being resumed (it runs again only with --retry-failed)."""
    return stored is not None and stored["status"] == Status.FAILED


def _same_input(stored: Mapping[str, Any], fingerprint: str | None) -> bool:
    """The stored answer belongs to this record: same content (rows from before fingerprints: same key)."""
    if fingerprint is None:  # the record cannot be read now: it is not the one that was answered
        return False
    return stored["fingerprint"] is None or stored["fingerprint"] == fingerprint


def _stored_result(key: str | int, stored: Mapping[str, Any], run_id: str) -> RecordResult:
    error = json.loads(stored["error_json"]) if stored["error_json"] else None
    summary = FailureSummary(**{**error, "models": tuple(error.get("models", ()))}) if error else None
    output = json.loads(stored["output_json"]) if stored["output_json"] else None
    return RecordResult(key, stored["status"], output, EMPTY, error=summary, run_id=run_id, resumed=True)


async def _as_items(records: Iterable[Any] | AsyncIterable[Any], threaded: bool) -> AsyncIterator[InputItem]:
    """InputItems as they are, plain dicts keyed by position (1, 2, ...)."""
    position = 0
    source = records if isinstance(records, AsyncIterable) else aiter_items(records, threaded=threaded)
    async for record in source:
        position += 1
        yield record if isinstance(record, InputItem) else InputItem(position, record)


class _Recorder(Hooks):
    """The session's own hooks: running totals, and the store (costs grouped into one commit a loop turn)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def on_cost(self, event: CostEvent, entry: CacheEntry | None) -> None:
        session = self._session
        session.totals.add_cost(event)
        if session._store is not None:
            session._store.add_cost(event, entry)
            session._schedule_flush()
        if session.generations is not None:
            session.generations.on_cost(event, entry)

    def on_step_end(self, record_key: str, result: StepResult) -> None:
        store = self._session._store
        if store is not None:
            store.add_step(self._session.run_id, record_key, result)
