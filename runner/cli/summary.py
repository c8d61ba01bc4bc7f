"""What `pipeline run` says when a run ends: the summary line, what batches saved, why it stopped and
how to finish it."""

from __future__ import annotations

import click

from ..errors import BudgetExceeded, RunStopped
from ..outcomes import RunStatus
from .enrich import generations_note
from .failures import describe


def summary(session) -> str:
    text = session.totals.summary()
    text = f"{text} (--mock: the fake's costs, nothing was billed)" if session.settings.mock else text
    return text + generations_note(session.generation_totals, session.run_id)


def report_end(session, stopped: RunStopped | None, interruption: str | None) -> None:
    """The summary, then why the run stopped: every figure as `pipeline runs` shows the run."""
    click.echo(f"run {session.run_id}: {summary(session)}", err=True)
    report_batches(session)
    final = session.final
    if final is not None and session.resumed_from is not None:
        click.echo(
            f"run {session.run_id} in all: {final['records_ok']} record(s) ok, {final['records_failed']} failed; "
            f"calls: {final['calls']} billed; cost: ${final['cost_usd']:.6f}",
            err=True,
        )
    if stopped is not None:
        click.echo(f"stopped: {stop_reason(stopped, session)}", err=True)
    elif interruption is not None:
        click.echo(f"stopped: {interruption}; finished records are kept", err=True)
    elif final is None or final["status"] != RunStatus.INTERRUPTED:  # an unexpected error says so itself afterwards
        return
    click.echo(f"finish it later with: --resume {session.run_id}", err=True)


def report_batches(session) -> None:
    """--batch-api: what went through batches, what those requests would have cost through the normal API
    (at the same prompt-caching discount), and what did not go through batches."""
    final = session.final
    if final is None or final.get("normal_api_usd") is None:
        return
    paid, normal = final["batched_usd"], final["batched_normal_usd"]
    text = f"run {session.run_id}: Batch API: {final['batched_calls']} call(s) in batches cost ${paid:.6f}; "
    if normal is None:
        text += "what they would cost through the normal API is unknown (the catalogue does not price them)"
    else:
        text += (
            f"the same requests through the normal API, at the same prompt-caching discount: ${normal:.6f} "
            f"(saved ${normal - paid:.6f})"
        )
    text += f"; {final['unbatched_calls']} call(s) not batched (normal API): ${final['unbatched_usd']:.6f}"
    click.echo(text, err=True)


def stop_reason(stopped: RunStopped, session) -> str:
    final = session.final
    if not isinstance(stopped, BudgetExceeded) or final is None:
        return describe(stopped)
    return (
        f"--max-cost ${session.options.max_cost_usd:.4f} reached: ${final['cost_usd']:.6f} spent by the run, "
        f"{final['records_ok']} record(s) finished and {final['records_failed']} failed; the next request could "
        "have passed the cap, so it was not sent; finished records are kept, resume with a higher --max-cost"
    )
