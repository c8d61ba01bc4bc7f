"""`pipeline run`: one record (`--input`) or a stream of them (`--inputs`), a dry run, a resume."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import click

from ..api import Pipeline, load_pipeline
from ..errors import OutputError, RunStopped, UsageError
from ..outcomes import Status
from ..report.progress import RunProgress
from ..report.textstream import TextPrinter
from ..run.files import FilesRoot
from ..run.inputs import InputItem, NotANumber, is_stream, parse_json, read_inputs
from ..settings import RunOptions, Settings
from ..spec.model import thaw
from .cluster import cluster_options, cluster_settings, open_session
from .connect import connection
from .dryrun import dry_run_catalog, print_estimate
from .failures import step_failed
from .options import db_options, refuse_without
from .resume import announce_resume
from .summary import report_batches, report_end, stop_reason, summary
from .tracing import Tracing, add_tracing, check_installed, content_wanted, tracing_wanted


def parse_inputs(values: tuple[str, ...]) -> dict[str, Any]:
    """`--input '{"a": 1}'`, or repeated `--input key=value` (a string) / `--input key:=JSON`."""
    record: dict[str, Any] = {}
    for value in values:
        stripped = value.strip()
        if stripped.startswith("{"):
            try:
                parsed = parse_json(stripped)
            except NotANumber as exc:
                raise UsageError(f"--input: {exc} is not a JSON number (JSON has no NaN or Infinity)") from None
            except json.JSONDecodeError as exc:
                raise UsageError(f"--input is not valid JSON: {exc.msg} at column {exc.colno}") from None
            record.update(parsed)
            continue
        if ":=" in value and value.index(":=") < value.index("=") + 1:
            name, raw = value.split(":=", 1)
            try:
                record[name.strip()] = parse_json(raw)
            except NotANumber as exc:
                raise UsageError(f"--input {name}:= {exc} is not a JSON number (JSON has no NaN or Infinity)") from None
            except json.JSONDecodeError as exc:
                raise UsageError(f"--input {name}:= needs a JSON value: {exc.msg}") from None
            continue
        if "=" not in value:
            raise UsageError(f"--input {value!r}: use a JSON object, key=value (a string) or key:=JSON")
        name, raw = value.split("=", 1)
        if not name.strip():
            raise UsageError(f"--input {value!r}: the key before '=' is empty")
        record[name.strip()] = raw
    return record


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--input", "inputs", multiple=True, metavar="JSON|KEY=VALUE", help="One input record (repeatable).")
@click.option("--inputs", "inputs_path", metavar="DATA", help="Records from a .jsonl or .csv file, or - for stdin.")
@click.option("--key-field", metavar="NAME", help="The field that keys each record (default: its line number).")
@click.option("--output", "output_path", metavar="OUT.jsonl", help="Write one JSON line per record here.")
@click.option("--ordered", is_flag=True, help="Write records in input order (a bounded reorder buffer).")
@click.option(
    "--concurrency", default=16, show_default=True, type=click.IntRange(1, 10_000), help="Model requests in flight."
)
@click.option("--user", "user_id", metavar="ID", help="End-user id, sent as `user` and stored with every cost.")
@db_options
@click.option("--max-cost", type=click.FloatRange(min=0), metavar="USD", help="Hard cap on the run's total cost.")
@click.option("--dry-run", is_flag=True, help="Render every prompt, call nothing, estimate the cost.")
@click.option("--mock", is_flag=True, help="Answer from the built-in fake OpenRouter: offline, no key, no cost.")
@click.option("--no-cache", is_flag=True, help="Serve nothing from the response cache (replies are still stored).")
@click.option("--resume", "resume_id", metavar="RUN_ID", help="Finish an earlier run without paying again.")
@click.option("--retry-failed", is_flag=True, help="With --resume: run the records that failed again (costs money).")
@click.option("--run-id", "join_id", metavar="NAME", help="Name the run; workers given the same name share it.")
@click.option("--stream", is_flag=True, help="With --input: write text steps' replies to stderr as they arrive.")
@click.option(
    "--files-root",
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Local attachments only from below DIR (default: the --inputs file's folder; the current one for --input).",
)
@click.option(
    "--max-attachment-mb",
    default=20.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    metavar="MB",
    help="A larger attachment fails its record.",
)
@click.option("--batch-api", is_flag=True, help="Send chat requests through OpenRouter's Batch API (about half price).")
@click.option(
    "--batch-size", default=1000, show_default=True, type=click.IntRange(1, 5000), help="Submit a batch at this many."
)
@click.option(
    "--batch-linger", default=5.0, show_default=True, type=click.FloatRange(min=0), metavar="SECONDS",
    help="...or when no request joined it for this long.",
)  # fmt: skip
@click.option(
    "--batch-poll", default=10.0, show_default=True, type=click.FloatRange(min=0.001), metavar="SECONDS",
    help="First wait before polling a batch (it grows to 60 s).",
)  # fmt: skip
@click.option(
    "--fetch-generations", is_flag=True, help="Store each call's GET /generation record (providers tried, latency)."
)
@click.option("--otel", is_flag=True, help="Export OpenTelemetry traces over OTLP (OTEL_EXPORTER_OTLP_*).")
@click.option("--otel-content", is_flag=True, help="With --otel: put prompt and reply text in the spans.")
@cluster_options
def run(
    file: str,
    inputs: tuple[str, ...],
    inputs_path: str | None,
    key_field: str | None,
    output_path: str | None,
    ordered: bool,
    concurrency: int,
    user_id: str | None,
    db: str | None,
    max_cost: float | None,
    dry_run: bool,
    mock: bool,
    no_cache: bool,
    resume_id: str | None,
    retry_failed: bool,
    join_id: str | None,
    db_schema: str | None,
    stream: bool,
    files_root: str | None,
    max_attachment_mb: float,
    batch_api: bool,
    batch_size: int,
    batch_linger: float,
    batch_poll: float,
    fetch_generations: bool,
    otel: bool,
    otel_content: bool,
    executor: str,
    ray_address: str | None,
    workers: int | None,
    block_size: int | None,
) -> None:
    """Run FILE for one record (--input, prints its output) or many (--inputs, JSON lines)."""
    pipeline = load_pipeline(file)
    if inputs and inputs_path:
        raise UsageError("give --input (one record) or --inputs (a file of records), not both")
    if not inputs and not inputs_path:
        raise UsageError("give the record with --input JSON (or key=value), or a file of records with --inputs")
    if resume_id and join_id:
        raise UsageError("give --resume RUN_ID (finish a run) or --run-id NAME (start or join one), not both")
    if retry_failed and not resume_id:
        raise UsageError("--retry-failed goes with --resume RUN_ID: it runs that run's failed records again")
    if stream and inputs_path:
        raise UsageError("--stream goes with --input (one record): a dataset's replies would interleave")
    refuse_without("--batch-api", batch_api, "batch_size", "batch_linger", "batch_poll")
    options = RunOptions(
        concurrency=concurrency,
        use_cache=not no_cache,
        max_cost_usd=max_cost,
        resume=resume_id is not None,
        retry_failed=retry_failed,
        stream=stream,
        files_root=_files_root(files_root, inputs_path),
        max_attachment_mb=max_attachment_mb,
        batch_api=batch_api,
        batch_size=batch_size,
        batch_linger_s=batch_linger,
        batch_poll_s=batch_poll,
        batch_poll_max_s=max(60.0, batch_poll),
        fetch_generations=fetch_generations,
        **cluster_settings(executor, ray_address, workers, block_size, one_record=bool(inputs)),
    )
    if batch_api and inputs and not dry_run:
        click.echo(
            "warning: --batch-api with one --input record: a batch can take minutes (up to 24 hours) to come back;"
            " the normal API answers in seconds",
            err=True,
        )
    if dry_run:
        items = _items(pipeline, inputs, inputs_path, key_field)
        files = FilesRoot(options.files_root, options.max_attachment_mb)
        with connection(db, mock, need_key=False) as settings:
            catalog = asyncio.run(dry_run_catalog(settings))
            print_estimate(pipeline, items, catalog, files, batch_api=options.batch_api and not options.stream)
        return
    traced = tracing_wanted(otel)
    if traced:
        check_installed()
    if resume_id:
        settings = Settings.from_env(db=db, db_schema=db_schema)
        announce_resume(settings, pipeline.name, resume_id, mock=mock, retry_failed=retry_failed)
    if inputs:
        record = pipeline.check_input(parse_inputs(inputs))
        with connection(db, mock, need_key=pipeline.spec.makes_calls, db_schema=db_schema) as settings:
            tracing = Tracing(pipeline, settings.base_url, content=content_wanted(otel_content)) if traced else None
            code = asyncio.run(_run_one(pipeline, record, settings, user_id, options, resume_id or join_id, tracing))
    else:
        items = _items(pipeline, (), inputs_path, key_field)
        with (
            connection(db, mock, need_key=pipeline.spec.makes_calls, db_schema=db_schema) as settings,
            _output(output_path) as out,
        ):
            tracing = Tracing(pipeline, settings.base_url, content=content_wanted(otel_content)) if traced else None
            run_id = resume_id or join_id
            code = asyncio.run(
                _run_batch(pipeline, items, settings, user_id, options, run_id, out, ordered, inputs_path, tracing)
            )
    sys.exit(code)


def _files_root(files_root: str | None, inputs_path: str | None) -> str:
    """Where local attachments may come from: --files-root, else the --inputs file's folder, else the current one."""
    if files_root is not None:
        if not Path(files_root).is_dir():
            raise UsageError(f"--files-root {files_root}: no such folder")
        return files_root
    if inputs_path is not None and not is_stream(inputs_path):
        return str(Path(inputs_path).parent)
    return "."


def _items(pipeline: Pipeline, inputs, inputs_path, key_field) -> Iterator[InputItem]:
    if inputs:
        return iter([InputItem(1, parse_inputs(inputs))])
    schema = thaw(pipeline.spec.input_schema) if pipeline.spec.input_schema is not None else None
    return read_inputs(inputs_path, key_field=key_field, input_schema=schema)


async def _run_one(pipeline, record, settings, user_id, options, resume_id, tracing=None) -> int:
    hooks = add_tracing(TextPrinter(sys.stderr) if options.stream else None, tracing)
    session = pipeline.session(settings, user_id=user_id, run_id=resume_id, options=options, hooks=hooks)
    stopped: RunStopped | None = None
    entered = False
    if tracing is not None:
        tracing.start(session)
    try:
        async with session:
            entered = True
            try:
                result = await session.run(record)
            except RunStopped as exc:
                stopped = session.stopped = exc
    finally:
        if entered:
            click.echo(f"run {session.run_id}: {summary(session)}", err=True)
            report_batches(session)
        if tracing is not None:  # after the summary: sending the last spans may wait for the collector
            tracing.finish(session)
    if stopped is not None:
        click.echo(f"stopped: {stop_reason(stopped, session)}", err=True)
        return stopped.exit_code
    try:
        click.echo(
            json.dumps(result.line() if result.status == Status.FAILED else result.output, indent=2, ensure_ascii=False)
        )
    except OSError as exc:  # main() reports it
        exc.add_note(f"the record is kept in the database: pipeline show {session.run_id}")
        raise
    if result.status == Status.FAILED:  # its line above has the error too
        click.echo(step_failed(result.error), err=True)
        return 1
    return 0


async def _run_batch(pipeline, items, settings, user_id, options, resume_id, out, ordered, inputs_path, tracing=None):
    progress = RunProgress(total_records=_count_records(inputs_path))
    hooks = add_tracing(progress, tracing)
    session = open_session(pipeline, settings, user_id=user_id, run_id=resume_id, options=options, hooks=hooks)
    stopped: RunStopped | None = None
    interruption: str | None = None
    entered = False
    if tracing is not None:
        tracing.start(session)
    try:
        async with session:
            entered = True
            # What is loaded by now lives for the whole run: keep the cyclic GC from walking it again and again.
            gc.collect()
            gc.freeze()
            progress.watch_batches(session.batches)
            session.totals.started = time.monotonic()
            results = session.run_many(items, ordered=ordered, threaded_input=is_stream(inputs_path))
            try:
                async for result in results:
                    _write_line(out, result.line())
            except RunStopped as exc:  # the budget, a stop status, or an output that cannot be written
                stopped = session.stopped = exc
            except asyncio.CancelledError:  # Ctrl-C: asyncio.run cancels the run, then raises KeyboardInterrupt
                interruption, session.interrupted = "interrupted (Ctrl-C)", True
                raise
            finally:
                await results.aclose()  # records in flight are cancelled before anything is counted
    finally:
        progress.close()
        if entered:
            report_end(session, stopped, interruption)
        if tracing is not None:  # after the summary: sending the last spans may wait for the collector
            tracing.finish(session)
    if stopped is not None:
        return stopped.exit_code
    if session.interrupted:
        return 1
    return 1 if session.totals.records_failed else 0


def _write_line(out: TextIO, line: dict[str, Any]) -> None:
    """One output line, flushed; a full disk or a closed pipe stops the run (its records are in the database)."""
    try:
        out.write(json.dumps(line, ensure_ascii=False) + "\n")
        out.flush()
    except BrokenPipeError:
        if out is sys.stdout:  # nobody reads any more: send what Python still holds to /dev/null, quietly
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise OutputError("the output pipe was closed") from None
    except OSError as exc:
        where = "stdout" if out is sys.stdout else f"--output {getattr(out, 'name', '')}"
        raise OutputError(f"cannot write to {where}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    """Opened before the run is created, so that an unwritable --output leaves no run behind."""
    if path is None:
        yield sys.stdout
        return
    folder = Path(path).parent
    if not folder.is_dir():
        raise UsageError(f"--output {path}: the folder {folder} does not exist")
    try:
        handle = Path(path).open("w", encoding="utf-8")  # noqa: SIM115 - closed below, its errors ignored
    except OSError as exc:
        raise UsageError(f"--output {path}: {exc.strerror or exc}") from None
    try:
        yield handle
    finally:
        with contextlib.suppress(OSError):  # a write already failed and stopped the run
            handle.close()


def _count_records(inputs_path: str) -> int | None:
    """The number of records, for the progress bar's ETA (a quick pass over the file)."""
    if is_stream(inputs_path) or not sys.stderr.isatty():
        return None
    try:
        with open(inputs_path, "rb") as handle:
            lines = sum(1 for line in handle if line.strip())
    except OSError:
        return None
    return lines - 1 if inputs_path.lower().endswith(".csv") else lines
