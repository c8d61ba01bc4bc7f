"""`pipeline run`'s options for where records run: `--executor local|ray`, `--ray-address`, `--workers`;
the session they choose (runner.cluster is imported only for a Ray run)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..errors import UsageError
from ..session import Session
from ..settings import RunOptions


def cluster_options(command: Callable) -> Callable:
    command = click.option(
        "--block-size", type=click.IntRange(min=1), metavar="N", help="With --executor ray: records per Ray task."
    )(command)
    command = click.option(
        "--workers", type=click.IntRange(min=1), metavar="N", help="With --executor ray: blocks of records in flight."
    )(command)
    command = click.option(
        "--ray-address", metavar="ADDRESS", help="With --executor ray: join this cluster (default: start a local one)."
    )(command)
    return click.option(
        "--executor",
        type=click.Choice(["local", "ray"]),
        default="local",
        show_default=True,
        help="Where records run: this process, or a Ray cluster (needs a PostgreSQL --db).",
    )(command)


def cluster_settings(executor: str, ray_address: str | None, workers: int | None, block_size: int | None, *,
                     one_record: bool) -> dict:  # fmt: skip
    """RunOptions' fields for the executor; the flags that only mean something with Ray refused without it."""
    if executor == "local":
        if ray_address or workers or block_size:
            raise UsageError("--ray-address, --workers and --block-size go with --executor ray")
        return {}
    if one_record:
        raise UsageError("--executor ray goes with --inputs (a file of records); one --input runs here")
    return {"executor": executor, "ray_address": ray_address, "workers": workers, "block_size": block_size}


def open_session(pipeline: Any, settings: Any, *, options: RunOptions, **kwargs: Any) -> Session:
    """The run's session: on this event loop, or the driver of a Ray run."""
    if options.executor != "ray":
        return pipeline.session(settings, options=options, **kwargs)
    from ..cluster import ray_session

    return ray_session(pipeline, settings, options=options, **kwargs)
