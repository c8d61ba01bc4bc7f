"""Progress on stderr: a rich bar on a terminal, plain periodic log lines otherwise; a run's Hooks."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..run.batching import BatchCollector
from ..run.hooks import Hooks
from ..run.results import CacheEntry, CostEvent, RecordResult, RunTotals


class RunProgress(Hooks):
    """Hears each billed reply and each finished record (pass it as the session's `hooks`); `close()` at the end."""

    def __init__(self, *, total_records: int | None, stream: TextIO | None = None, every_s: float = 10.0) -> None:
        self._totals = RunTotals()
        self._stream = stream or sys.stderr
        self._every_s = every_s
        self._started = time.monotonic()
        self._last_line = self._started
        self._bar: Progress | None = None
        self._batches: BatchCollector | None = None
        if self._stream.isatty():
            self._bar = Progress(
                TextColumn("[bold]records"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(file=self._stream),
                transient=False,
            )
            self._task = self._bar.add_task("run", total=total_records, detail="")
            self._bar.start()

    def watch_batches(self, batches: BatchCollector | None) -> None:
        """--batch-api: show batches submitted, running and done, updated as they change."""
        self._batches = batches
        if batches is not None:
            batches.on_change = self.update

    def _detail(self) -> str:
        totals = self._totals
        elapsed = max(time.monotonic() - self._started, 1e-9)
        batches = f"  {self._batches.counts().line()}" if self._batches is not None else ""
        return (
            f"{totals.records_failed} failed  {totals.calls / elapsed:.1f} calls/s  "
            f"{totals.cache_hits} cached  ${totals.cost_usd:.4f}{batches}"
        )

    def on_cost(self, event: CostEvent, entry: CacheEntry | None) -> None:
        self._totals.add_cost(event)

    def on_record_end(self, result: RecordResult) -> None:
        self._totals.add_record(result)
        self.update()

    def update(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self._totals.records, detail=self._detail())
            return
        now = time.monotonic()
        if now - self._last_line >= self._every_s:
            self._last_line = now
            print(f"progress: {self._totals.records} records done, {self._detail()}", file=self._stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self.update()
            self._bar.stop()
