"""`pipeline report RUN_ID -o report.html`: one run as a self-contained HTML page."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import click

from ..api import load_pipeline
from ..errors import PipelineError, UsageError
from ..report.html import render_report
from ..report.runreport import DagStep, build_report
from ..spec.model import ChatStep
from .options import db_options, open_store


@click.command()
@click.argument("run_id")
@click.option("-o", "--output", "output_path", required=True, metavar="REPORT.html", help="Where to write the page.")
@click.option(
    "--pipeline",
    "pipeline_path",
    type=click.Path(dir_okay=False),
    help="The pipeline file, for the DAG (default: the path the run was started with).",
)
@db_options
def report(run_id: str, output_path: str, pipeline_path: str | None, db: str | None, db_schema: str | None) -> None:
    """Write one run as an HTML page that opens offline: the DAG with each step's spend, spend by step,
    module, model and user, latency percentiles, failures by kind and spend over time."""
    target = Path(output_path)
    if not target.parent.is_dir():
        raise UsageError(f"-o {output_path}: the folder {target.parent} does not exist")
    with open_store(db, db_schema) as store:
        store.mark_abandoned_runs()
        detail = store.run_detail(run_id)
        if detail is None:
            raise UsageError(f"no run {run_id!r} in this database; `pipeline runs` lists them")
        calls = store.run_calls(run_id)
        batches = store.run_batches(run_id)
    run = detail["run"]
    dag = _dag(pipeline_path or run["pipeline_path"], run["pipeline"], explicit=pipeline_path is not None)
    if dag is not None:
        spread_steps = {row["step"] for row in calls if row.get("item_index") is not None}
        dag = [DagStep(step.id, step.parents, step.detail, step.for_each or step.id in spread_steps) for step in dag]
    built = build_report(run, detail["records"], calls, dag, batches)
    try:
        target.write_text(render_report(built, generated_by=f"pipeline {_version()}"), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"-o {output_path}: {exc.strerror or exc}") from None
    click.echo(f"wrote {output_path}: run {run_id}, {len(built.dag)} step(s), {built.calls} billed call(s)", err=True)


def _dag(path: str | None, name: str, *, explicit: bool) -> list[DagStep] | None:
    """The steps and their parents from the pipeline file; None (with a note) when it cannot be read."""
    if not path or not Path(path).is_file():
        if explicit:
            raise UsageError(f"--pipeline {path}: no such file")
        click.echo(f"note: {path} not found: the DAG shows the steps without edges (give --pipeline FILE)", err=True)
        return None
    try:
        pipeline = load_pipeline(path)
    except PipelineError as exc:
        if explicit:
            raise
        click.echo(f"note: {path} no longer loads ({exc}); the DAG shows the steps without edges", err=True)
        return None
    if pipeline.name != name:
        message = f"{path} is pipeline {pipeline.name!r}, but the run is of {name!r}"
        if explicit:
            raise UsageError(f"--pipeline {message}")
        click.echo(f"note: {message}; the DAG shows the steps without edges", err=True)
        return None
    steps = []
    for step_id in pipeline.graph.order:
        step = pipeline.spec.step(step_id)
        kind = step.module if isinstance(step, ChatStep) else step.kind
        detail = " · ".join((kind, *step.models[:1]))
        steps.append(DagStep(step_id, pipeline.graph.parents[step_id], detail, step.for_each is not None))
    return steps


def _version() -> str:
    try:
        return version("pipeline-runner")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "(source)"
