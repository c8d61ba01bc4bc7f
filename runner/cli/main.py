"""The `pipeline` command group: logging, the commands (one module each) and `main()`. Errors become
exit codes inside click (failures.PipelineGroup), so `main()` only starts the group."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from typing import NoReturn

import click

from ..report.logs import JsonLines, JsonLogFormatter, redactable
from .cache import cache_group
from .costs import costs
from .db import db
from .enrich import enrich
from .failures import PipelineGroup
from .graph import graph_command
from .models import models_command
from .report import report
from .run import run
from .runs import runs, show
from .test import test_command
from .validate import validate


class _RedactKey(logging.Filter):
    """Belt and braces: the API key is never formatted into a log line, even by a third party."""

    def __init__(self, secret: str | None) -> None:
        super().__init__()
        self._secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secret and self._secret in record.getMessage():
            record.msg = record.getMessage().replace(self._secret, "[redacted]")
            record.args = ()
        return True


def _configure_logging(verbose: int, log_format: str = "text") -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    secret = redactable(os.environ.get("OPENROUTER_API_KEY"))  # a key too short to tell from text is left alone
    if log_format == "json":  # every stderr line a JSON object; the run's events (INFO) are what it is for
        level = min(level, logging.INFO)
        sys.stderr = JsonLines(sys.stderr, secret)
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLogFormatter(secret))
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_RedactKey(secret))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("runner").setLevel(level)
    # A run's events are for --log-format json; in text they would repeat the other lines (-vv shows them).
    events = level if log_format == "json" or verbose > 1 else logging.ERROR
    logging.getLogger("runner.run.eventlog").setLevel(events)


class _Commands(PipelineGroup):
    """The commands; one whose output cannot be written stops here, before click turns a closed pipe
    into a silent exit 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except OSError as exc:
            if not _writing_stdout(exc):
                raise
            _stdout_lost(exc)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log detail on stderr (-vv for debug).")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per line on stderr, with each record, step and call of a run (INFO).",
)
@click.version_option(package_name="pipeline-runner")
def cli(verbose: int, log_format: str) -> None:
    """Run declarative prompt pipelines on OpenRouter, and account for every cent."""
    _configure_logging(verbose, log_format)


cli.add_command(run)
cli.add_command(test_command)
cli.add_command(graph_command)
cli.add_command(models_command)
cli.add_command(validate)
cli.add_command(costs)
cli.add_command(runs)
cli.add_command(show)
cli.add_command(cache_group)
cli.add_command(db)
cli.add_command(enrich)
cli.add_command(report)


def main() -> None:
    cli.main(prog_name="pipeline")


def _writing_stdout(exc: OSError) -> bool:
    """The error came from writing the command's output: a `click.echo` to stdout failed."""
    return any(
        frame.f_code is click.utils.echo.__code__ and not frame.f_locals.get("err")
        for frame, _ in traceback.walk_tb(exc.__traceback__)
    )


def _stdout_lost(exc: OSError) -> NoReturn:
    """A full disk says so in one line; a closed pipe (`| head`) stops quietly. Both exit 3, like any stop.

    What Python still holds for stdout goes to /dev/null, so that its last flush at exit fails nowhere.
    """
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if not isinstance(exc, BrokenPipeError):
        notes = "".join(f"; {note}" for note in getattr(exc, "__notes__", ()))
        click.echo(f"error: cannot write to stdout: {exc.strerror or exc}{notes}", err=True)
    sys.exit(3)
