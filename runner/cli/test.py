"""`pipeline test` (cases in mock, live or replay mode; reports) and `pipeline graph`."""

from __future__ import annotations

import asyncio
import json
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from ..api import load_pipeline
from ..chat.client import production_transport
from ..errors import UsageError
from ..report.diagram import dot, mermaid
from ..testing.assertions import MISSING
from ..testing.cases import CaseResult, load_cases, run_cases
from ..testing.cassette import Cassette, RecordingTransport, ReplayTransport, cassette_path
from .run import connection

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
@click.option("--db", metavar="PATH", help="Where live runs record their costs (default: $PIPELINE_DB).")
def test_command(
    file: str,
    cases_path: str,
    mode: str | None,
    record: bool,
    repeat: int,
    pass_rate: float,
    junit_path: str | None,
    as_json: bool,
    db: str | None,
) -> None:
    """Run the cases of CASES.yaml against FILE and check their assertions (exit 0 when all pass)."""
    pipeline = load_pipeline(file)
    case_file = load_cases(cases_path)
    tape = cassette_path(cases_path)
    if record and mode == "replay":
        raise UsageError("--record runs the pipeline for real (live, or --mode mock); it cannot record a replay")
    mode = mode or ("live" if record else "replay")
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
        with connection(db, mock=mode == "mock") as settings:
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
        click.echo(json.dumps([_case_json(result) for result in results], indent=2, ensure_ascii=False))
    failed = [result for result in results if not result.passed]
    click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed", err=True)
    sys.exit(1 if failed else 0)


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
            click.echo(f"      expected: {_show(item.assertion.expected)}")
            click.echo(f"      actual:   {_show(shown.actual)}")
        if shown is not None and shown.detail:
            click.echo(f"      {shown.detail}")


def _show(value: Any) -> str:
    if value is MISSING:
        return "(nothing)"
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 300 else text[:297] + "..."


def _case_json(result: CaseResult) -> dict[str, Any]:
    return {
        "name": result.case.name,
        "passed": result.passed,
        "seconds": round(result.seconds, 3),
        "errors": result.errors,
        "assertions": [
            {
                "assertion": item.assertion.describe(),
                "line": item.assertion.line,
                "passed": item.passed(result.pass_rate),
                "passes": item.passes,
                "runs": item.runs,
                "expected": item.assertion.expected,
                "actual": None if item.last is None or item.last.actual is MISSING else item.last.actual,
                "detail": (item.failed_check or item.last).detail if item.last else "",
            }
            for item in result.results
        ],
    }


def write_junit(results: list[CaseResult], path: str, suite_name: str) -> None:
    failures = sum(1 for result in results if not result.passed and not result.errors)
    errors = sum(1 for result in results if result.errors)
    suite = ElementTree.Element(
        "testsuite",
        name=suite_name,
        tests=str(len(results)),
        failures=str(failures),
        errors=str(errors),
        time=f"{sum(result.seconds for result in results):.3f}",
    )
    for result in results:
        testcase = ElementTree.SubElement(
            suite, "testcase", classname=suite_name, name=result.case.name, time=f"{result.seconds:.3f}"
        )
        if result.errors:
            error = ElementTree.SubElement(testcase, "error", message=result.errors[0])
            error.text = "\n".join(result.errors)
            continue
        broken = [item for item in result.results if not item.passed(result.pass_rate)]
        if broken:
            lines = []
            for item in broken:
                shown = item.failed_check or item.last
                actual = None if shown is None or shown.actual is MISSING else shown.actual
                lines.append(
                    f"{item.assertion.describe()}: passed {item.passes}/{item.runs}; "
                    f"expected {_show(item.assertion.expected)}, actual {_show(actual)}"
                    + (f" ({shown.detail})" if shown is not None and shown.detail else "")
                )
            failure = ElementTree.SubElement(testcase, "failure", message=lines[0])
            failure.text = "\n".join(lines)
    tree = ElementTree.ElementTree(ElementTree.Element("testsuites"))
    tree.getroot().append(suite)
    ElementTree.indent(tree)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)


@click.command(name="graph")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "output_format", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True)
def graph_command(file: str, output_format: str) -> None:
    """Print the step DAG of FILE (steps with module and model, edges from references)."""
    pipeline = load_pipeline(file)
    render = mermaid if output_format == "mermaid" else dot
    click.echo(render(pipeline.spec, pipeline.graph), nl=False)
