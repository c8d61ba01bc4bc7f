"""`pipeline run --stream`: each text step's reply on stderr as it arrives, under its step's id; a
`for_each` element's under its step's id and index, a line at a time."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

from ..run.streaming import EventHooks, StepFinished, StreamEvent, TextDelta

if TYPE_CHECKING:
    from ..chat.reply import Reply
    from ..errors import PipelineError


class TextPrinter(EventHooks):
    """A run's hooks that write each piece of text at once: `[step] text...`, a new line when the step
    ends or another step's text comes in between (parallel steps take turns line by line).

    The elements of a map step stream at the same time: each element's text is kept until it makes a
    whole line (or its call or the step ends), then written as `[step 3] line`, so two elements never
    share a line."""

    def __init__(self, out: TextIO | None = None) -> None:
        super().__init__(self._show)
        self._out = out or sys.stderr
        self._step: str | None = None  # the step whose text the current line holds
        self._elements: dict[tuple[str, str, int], str] = {}  # (record, step, index) -> text not yet written

    def _show(self, event: StreamEvent) -> None:
        if isinstance(event, TextDelta) and event.item_index is not None:
            self._element_text((event.record_key, event.step_id, event.item_index), event.text)
        elif isinstance(event, TextDelta):
            if event.step_id != self._step:
                self._end_line()
                self._out.write(f"[{event.step_id}] ")
                self._step = event.step_id
            self._out.write(event.text)
            self._out.flush()
        elif isinstance(event, StepFinished):
            for element in sorted(key for key in self._elements if key[:2] == (event.record_key, event.step_id)):
                self._flush_element(element)
            if event.step_id == self._step:
                if event.result.status == "failed":
                    self._out.write(f" [{event.step_id} failed]")
                self._end_line()

    def on_call_end(
        self,
        record_key: str,
        step_id: str,
        model: str,
        reply: Reply | None,
        error: PipelineError | None,
        *,
        item_index: int | None = None,
    ) -> None:
        if item_index is not None:  # the element's reply is whole: its last line need not wait for the step
            self._flush_element((record_key, step_id, item_index))

    def _element_text(self, element: tuple[str, str, int], text: str) -> None:
        *lines, rest = (self._elements.pop(element, "") + text).split("\n")
        for line in lines:
            self._write_line(element, line)
        if rest:
            self._elements[element] = rest

    def _flush_element(self, element: tuple[str, str, int]) -> None:
        rest = self._elements.pop(element, "")
        if rest.strip():
            self._write_line(element, rest)

    def _write_line(self, element: tuple[str, str, int], line: str) -> None:
        self._end_line()
        _, step_id, index = element
        self._out.write(f"[{step_id} {index}] {line}\n")
        self._out.flush()

    def _end_line(self) -> None:
        if self._step is not None:
            self._out.write("\n")
            self._out.flush()
            self._step = None
