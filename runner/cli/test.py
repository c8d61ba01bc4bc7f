"""`pipeline test`: cases in mock, live or replay mode, printed as they finish; JSON, JUnit and Markdown reports,
a comparison with a baseline report, and models compared (`--try`)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import click

from ..api import load_pipeline
from ..chat.client import production_transport
from ..errors import UsageError
from ..report.tables import format_rows
from ..testing.cases import CaseResult, load_cases, run_cases
from ..testing.cassette import Cassette, RecordingTransport, ReplayTransport, cassette_path
from ..testing.compare import (
    Choice,
    cheapest_passing,
    check_try_models,
    compare,
    load_baseline,
    markdown,
    parse_try,
    with_model,
)
from ..testing.junit import case_json, show_value, write_junit
from .connect import connection
from .dryrun import dry_run_catalog
from .options import db_options

REPLAY_KEY = "replay-key-not-secret"


@click.command(name="test")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--cases", "cases_path", required=True, metavar="CASES.yaml", help="The cases to run.")
@click.option(
    "--mode",
    type=click.Choice(["replay", "mock", "live"]),
    default=None,
    help="replay: answers from the cassette beside the cases (default); mock: the built-in fake; live: OpenRouter.",
)
@click.option("--record", is_flag=True, help="Run live (or --mode mock) once and write every exchange to the cassette.")
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(1, 1000), help="Runs per case.")
@click.option(
    "--pass-rate",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True),
    help="Share of runs an assertion must pass (for non-deterministic output).",
)
@click.option("--junit", "junit_path", metavar="REPORT.xml", help="Write a JUnit XML report.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("--baseline", "baseline_path", metavar="OLD.json", help="Compare with an earlier --json report.")
@click.option("--markdown", "markdown_path", metavar="FILE", help="Write a pull-request summary in Markdown.")
@click.option(
    "--try",
    "tries",
    multiple=True,
    metavar="STEP=MODEL[,MODEL...]",
    help="Run the cases once per model for STEP and compare pass rate, cost and latency (repeatable).",
)
@db_options
def test_command(
    file: str,
    cases_path: str,
    mode: str | None,
    record: bool,
    repeat: int,
    pass_rate: float,
    junit_path: str | None,
    as_json: bool,
    baseline_path: str | None,
    markdown_path: str | None,
    tries: tuple[str, ...],
    db: str | None,
    db_schema: str | None,
) -> None:
    """Run the cases of CASES.yaml against FILE and check their assertions (exit 0 when all pass)."""
    pipeline = load_pipeline(file)
    case_file = load_cases(cases_path)
    tape = cassette_path(cases_path)
    if record and mode == "replay":
        raise UsageError("--record runs the pipeline for real (live, or --mode mock); it cannot record a replay")
    mode = mode or ("live" if record else "replay")
    for flag, given in (("--baseline", baseline_path), ("--junit", junit_path)):
        if tries and given:  # refused, not ignored: --try's table compares the models with each other
            raise UsageError(
                f"{flag} goes with a run of the cases, not with --try (which compares the models tried with "
                f"each other); drop {flag} or --try"
            )
    baseline = load_baseline(baseline_path) if baseline_path else None
    _check_outputs(("--markdown", markdown_path, False), ("--junit", junit_path, True))  # before any case runs
    if tries:
        if mode == "replay" or record:
            raise UsageError(
                "--try asks other models: use --mode mock or --mode live (a cassette holds one model's replies)"
            )
        choices = parse_try(tries, pipeline.spec.step_ids)
        code = _compare_models(
            pipeline, case_file, choices, mode, repeat, pass_rate, markdown_path, as_json, db, db_schema
        )
        sys.exit(code)
    printer = None if as_json else _print_case
    if mode == "replay":
        if not tape.exists():
            raise UsageError(
                f"no cassette at {tape}: record one with `pipeline test {file} --cases {cases_path} --record`"
            )
        with connection(None, mock=False, need_key=False) as settings:
            settings = replace(settings, api_key=REPLAY_KEY, db=None, models_cache=False)
            cassette = Cassette.load(tape)
            results = asyncio.run(
                run_cases(
                    pipeline,
                    case_file,
                    settings,
                    transport_factory=lambda: ReplayTransport(cassette),
                    repeat=repeat,
                    pass_rate=pass_rate,
                    on_case=printer,
                )
            )
    else:
        with connection(db, mock=mode == "mock", db_schema=db_schema) as settings:
            if mode == "mock":
                settings = replace(settings, db=None)
            cassette = Cassette(tape) if record else None
            factory = (lambda: RecordingTransport(production_transport(100), cassette)) if cassette else None
            results = asyncio.run(
                run_cases(
                    pipeline,
                    case_file,
                    settings,
                    transport_factory=factory,
                    repeat=repeat,
                    pass_rate=pass_rate,
                    on_case=printer,
                )
            )
            if cassette is not None:
                cassette.save()
                click.echo(
                    f"recorded {sum(len(items) for items in cassette.chats.values())} exchange(s) in {tape}", err=True
                )
    if junit_path:
        write_junit(results, junit_path, pipeline.name)
    if as_json:
        click.echo(json.dumps([case_json(result) for result in results], indent=2, ensure_ascii=False))
    rows = compare(results, baseline)
    if markdown_path:
        _write(markdown_path, markdown(pipeline.name, rows, repeat=repeat, baseline=baseline is not None))
    if repeat > 1 and not as_json:
        for result in results:
            click.echo(
                f"{result.case.name}: {result.runs_passed}/{len(result.runs)} runs passed, "
                f"pass@{repeat} {_word(result.pass_at_n)}, pass^{repeat} {_word(result.pass_all_n)}"
            )
    regressed = [row.name for row in rows if row.state == "regressed"]
    if regressed:
        click.echo(f"regressed since {baseline_path}: {', '.join(regressed)}", err=True)
    failed = [result for result in results if not result.passed]
    click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed", err=True)
    sys.exit(1 if failed else 0)


def _compare_models(pipeline, case_file, choices, mode, repeat, pass_rate, markdown_path, as_json, db, db_schema):
    """`--try`: the cases once per (step, model), then one table; exit 0 when some choice passes every case."""
    tried = []
    with connection(db, mock=mode == "mock", db_schema=db_schema) as settings:
        if mode == "mock":
            settings = replace(settings, db=None)
        check_try_models(choices, asyncio.run(dry_run_catalog(settings)))  # the catalogue the runs will use
        for step, model in choices:
            variant = with_model(pipeline, step, model)
            results = asyncio.run(run_cases(variant, case_file, settings, repeat=repeat, pass_rate=pass_rate))
            tried.append(Choice(step, model, tuple(results)))
            click.echo(f"{step}={model}: {sum(result.passed for result in results)}/{len(results)} cases", err=True)
    rows = [choice.row() for choice in tried]
    if as_json:
        click.echo(format_rows([choice.row(shown=False) for choice in tried], "json"))
    else:
        click.echo(format_rows(rows, "table", total=False))
    best = cheapest_passing(tried)
    click.echo(
        f"cheapest that passes every case: {best.step}={best.model}" if best else "no choice passes every case",
        err=True,
    )
    if markdown_path:
        header = (
            "| step | model | cases passed | pass rate | cost | mean latency |\n| --- | --- | --- | --- | --- | --- |\n"
        )
        body = "".join(
            f"| {row['step']} | {row['model']} | {row['cases_passed']} | {row['pass_rate']} | "
            f"${row['cost_usd']:.6f} | {row['mean_latency_ms']} ms |\n"
            for row in rows
        )
        _write(markdown_path, f"### pipeline test --try: {pipeline.name}\n\n{header}{body}")
    return 0 if best else 1


def _check_outputs(*outputs: tuple[str, str | None, bool]) -> None:
    """Each report file (flag, path, whether its folders are made) can be written where it is asked for:
    told before the cases run (live, they cost money), not after."""
    for flag, given, makes_folders in outputs:
        if not given:
            continue
        path = Path(given)
        if path.is_dir():
            raise UsageError(f"{flag} {given}: that is a folder; name a file to write")
        folder = path.parent
        while makes_folders and not folder.exists() and folder != folder.parent:
            folder = folder.parent  # the folders are made: the nearest one that exists must take them
        if not folder.is_dir():
            raise UsageError(f"{flag} {given}: there is no folder {path.parent}")
        if not os.access(path if path.exists() else folder, os.W_OK):
            raise UsageError(f"{flag} {given}: cannot write there (permission denied)")


def _write(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--markdown {path}: {exc.strerror or exc}") from None


def _word(value: bool) -> str:
    return "yes" if value else "no"


def _print_case(result: CaseResult) -> None:
    case = result.case
    mark = "PASS" if result.passed else "FAIL"
    click.echo(f"{mark} {case.name} ({result.seconds:.2f}s)")
    for error in result.errors:
        click.echo(f"    error: {error}")
    for item in result.results:
        if item.passed(result.pass_rate) or item.runs == 0:
            continue
        shown = item.failed_check or item.last
        line = f" (line {item.assertion.line})" if item.assertion.line else ""
        click.echo(f"    {item.assertion.describe()}{line}: passed {item.passes}/{item.runs}")
        if shown is not None and item.assertion.kind != "judge":
            click.echo(f"      expected: {show_value(item.assertion.expected)}")
            click.echo(f"      actual:   {show_value(shown.actual)}")
        if shown is not None and shown.detail:
            click.echo(f"      {shown.detail}")
