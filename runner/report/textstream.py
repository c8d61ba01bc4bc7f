"""`pipeline run --stream`: each text step's reply on stderr as it arrives, under its step's id."""

from __future__ import annotations

import sys
from typing import TextIO

from ..run.streaming import EventHooks, StepFinished, StreamEvent, TextDelta


class TextPrinter(EventHooks):
    """A run's hooks that write each piece of text at once: `[step] text...`, a new line when the step
    ends or another step's text comes in between (parallel steps take turns line by line)."""

    def __init__(self, out: TextIO | None = None) -> None:
        super().__init__(self._show)
        self._out = out or sys.stderr
        self._step: str | None = None  # the step whose text the current line holds

    def _show(self, event: StreamEvent) -> None:
        if isinstance(event, TextDelta):
            if event.step_id != self._step:
                self._end_line()
                self._out.write(f"[{event.step_id}] ")
                self._step = event.step_id
            self._out.write(event.text)
            self._out.flush()
        elif isinstance(event, StepFinished) and event.step_id == self._step:
            if event.result.status == "failed":
                self._out.write(f" [{event.step_id} failed]")
            self._end_line()

    def _end_line(self) -> None:
        if self._step is not None:
            self._out.write("\n")
            self._out.flush()
            self._step = None
