"""`pipeline run --resume`: what resuming a run will do, said before it starts, or a refusal to pay again."""

from __future__ import annotations

import click

from ..errors import UsageError
from ..outcomes import RunStatus
from ..settings import Settings
from ..store import Store
from ..store.liveness import this_process


def announce_resume(settings: Settings, pipeline: str, run_id: str, *, mock: bool, retry_failed: bool) -> None:
    """Say what --resume will run again, or refuse to pay again for a finished run's failed records.

    Records that failed are paid for again when they run again, so that needs --retry-failed.
    """
    with Store(settings.db, schema=settings.db_schema) as store:
        store.mark_abandoned_runs()
        row = store.resumable_run(run_id, pipeline, mock=mock)
    if (
        row["status"] == RunStatus.RUNNING and row["host"] == this_process().host
    ):  # its process is alive: it was checked
        raise UsageError(f"--resume {run_id}: the run is still running (process {row['pid']}); stop it first")
    done, failed = row["records_ok"], row["records_failed"]
    finished = row["status"] in (RunStatus.OK, RunStatus.FAILED)
    if finished and not failed:
        click.echo(
            f"run {run_id} finished with all {done} record(s) done: they are re-emitted without calls; "
            "a record whose content changed since runs again",
            err=True,
        )
        return
    if finished and not retry_failed:
        raise UsageError(
            f"--resume {run_id}: the run finished and only its {failed} failed record(s) are left; running them "
            "again costs money: add --retry-failed to do so"
        )
    if retry_failed:
        plan = f"its {failed} failed record(s) run again (--retry-failed)"
    elif failed:
        plan = f"its {failed} failed record(s) stay failed (--retry-failed runs them again)"
    else:
        plan = "no record had failed"
    click.echo(
        f"resuming run {run_id} ({row['status']}): {done} finished record(s) are re-emitted without calls, "
        f"{plan}, records not run yet run now",
        err=True,
    )
