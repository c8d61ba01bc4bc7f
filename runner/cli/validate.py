"""`pipeline validate`: pipeline files (or folders of them) checked offline, as text, JSON or GitHub annotations."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..api import load_pipeline
from ..chat.catalog import offline_catalog
from ..check.rules import Finding, lint
from ..errors import SpecError, SpecErrors, UsageError
from ..settings import Settings


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option(
    "--format", "output_format", type=click.Choice(["text", "json", "github"]), default="text", show_default=True
)
@click.option("--strict", is_flag=True, help="Warnings fail the check too.")
def validate(paths: tuple[str, ...], output_format: str, strict: bool) -> None:
    """Check pipeline files (or folders of them) offline: loading, references, models, limits."""
    files = _pipeline_files(paths)
    settings = Settings.from_env()
    catalog = offline_catalog(settings.base_url, settings.cache_dir)
    findings: list[Finding] = []
    summaries = []
    for path in files:
        try:
            pipeline = load_pipeline(path)
        except SpecError as exc:
            errors = exc.errors if isinstance(exc, SpecErrors) else (exc,)
            findings.extend(
                Finding("error", error.reason, error.path or path, error.line, error.column) for error in errors
            )
            continue
        found = lint(pipeline.spec, pipeline.graph, catalog)
        findings.extend(found)
        steps = len(pipeline.spec.steps)
        summaries.append((path, f"{steps} step{'s' if steps != 1 else ''}: {' -> '.join(pipeline.graph.order)}"))
    errors = sum(1 for finding in findings if finding.severity == "error")
    warnings = len(findings) - errors
    if output_format == "json":
        document = {"files": files, "errors": errors, "warnings": warnings, "findings": [f.as_dict() for f in findings]}
        click.echo(json.dumps(document, indent=2))
    elif output_format == "github":
        for finding in findings:
            click.echo(_github_annotation(finding))
    else:
        for path, summary in summaries:
            if not any(finding.path == path and finding.severity == "error" for finding in findings):
                click.echo(f"{path}: ok ({summary})")
        for finding in findings:
            where = ":".join(str(part) for part in (finding.path, finding.line, finding.column) if part is not None)
            click.echo(f"{where}: {finding.severity}: {finding.message}", err=True)
    if errors or warnings:
        click.echo(f"{errors} error(s), {warnings} warning(s) in {len(files)} file(s)", err=True)
    if errors or (strict and warnings):
        sys.exit(2)


def _github_annotation(finding: Finding) -> str:
    def escape(text: str, *, property_value: bool = False) -> str:
        text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        return text.replace(":", "%3A").replace(",", "%2C") if property_value else text

    parts = [f"file={escape(finding.path, property_value=True)}"]
    if finding.line is not None:
        parts.append(f"line={finding.line}")
    if finding.column is not None:
        parts.append(f"col={finding.column}")
    return f"::{finding.severity} {','.join(parts)}::{escape(finding.message)}"


def _pipeline_files(paths: tuple[str, ...]) -> list[str]:
    files: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                item
                for item in [*path.glob("*.yaml"), *path.glob("*.yml")]
                if not item.name.endswith((".cases.yaml", ".cases.yml"))  # test cases live beside their pipelines
            )
            if not found:
                raise UsageError(f"{raw}: no .yaml or .yml files in this folder")
            files.extend(str(item) for item in found)
        else:
            files.append(raw)
    return files
