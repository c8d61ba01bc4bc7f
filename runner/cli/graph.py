"""`pipeline graph`: the step DAG of a pipeline as Mermaid or dot."""

from __future__ import annotations

import click

from ..api import load_pipeline
from ..report.diagram import dot, mermaid


@click.command(name="graph")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "output_format", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True)
def graph_command(file: str, output_format: str) -> None:
    """Print the step DAG of FILE (steps with module and model, edges from references)."""
    pipeline = load_pipeline(file)
    render = mermaid if output_format == "mermaid" else dot
    click.echo(render(pipeline.spec, pipeline.graph), nl=False)
