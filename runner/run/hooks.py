"""What a run announces: the start and the end of each record, step and call, and each billed reply.

The executor reports and never writes; the session's store writer and running totals, a test's
lists, a tracer or a progress display are Hooks implementations. Override only the events you need:
`fan_out` calls, for each event, only the hooks that override it, so an unused event costs one call
of an empty function.

A call of a `for_each` element or of a tool round says which: the call events and `on_text_delta` then
get the keyword arguments `item_index` (and, for `on_call_start`, `round`); they are left out when
unset, so hooks written without them still hear every other call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..chat.reply import Reply
    from ..errors import PipelineError
    from .results import CacheEntry, CostEvent, RecordResult, StepResult

EVENTS = (
    "on_record_start",
    "on_record_end",
    "on_step_start",
    "on_step_end",
    "on_call_start",
    "on_call_body",
    "on_call_retry",
    "on_call_end",
    "on_cost",
    "on_text_delta",
)


class Hooks:
    """Every event of a run, each doing nothing here."""

    def on_record_start(self, record_key: str) -> None:
        """A record is about to run (after its input was read; resumed records have no start)."""

    def on_record_end(self, result: RecordResult) -> None:
        """A record finished: run, failed on its input, or read back from an earlier session of the run."""

    def on_step_start(self, record_key: str, step_id: str) -> None:
        """A step's runner starts; a step skipped by `when` or by a failed parent has only an end."""

    def on_step_end(self, record_key: str, result: StepResult) -> None:
        """A step finished: ok, failed or skipped."""

    def on_call_start(
        self, record_key: str, step_id: str, model: str, *, item_index: int | None = None, round: int | None = None
    ) -> None:
        """A request goes to OpenRouter (a cache hit makes none); `item_index`: the `for_each` element it
        belongs to, `round`: its tool round (1 for the first), each only when set."""

    def on_call_body(
        self, record_key: str, step_id: str, model: str, body: Mapping[str, Any], *, item_index: int | None = None
    ) -> None:
        """The request body just announced by `on_call_start` (for tracers; it holds the prompt, never the key)."""

    def on_call_retry(
        self,
        record_key: str,
        step_id: str,
        model: str,
        status: int | None,
        reason: str,
        wait_s: float,
        *,
        item_index: int | None = None,
    ) -> None:
        """An HTTP attempt of the call failed in transit (429, 5xx, timeout, dropped connection; `status` None
        when no response came) and the call is tried again after `wait_s` seconds."""

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
        """The request came back with `reply`, or failed with `error` (a cancelled request has no end)."""

    def on_cost(self, event: CostEvent, entry: CacheEntry | None) -> None:
        """A billed or cached reply; `entry` is set when the reply should be kept in the response cache."""

    def on_text_delta(self, record_key: str, step_id: str, text: str, *, item_index: int | None = None) -> None:
        """A piece of a streamed text step's reply, as it arrived (a cached reply comes whole, in one piece);
        `item_index` when it is a `for_each` element's."""


class FanOut(Hooks):
    """Several Hooks as one: each event goes to the hooks that override it, in the order given."""

    def __init__(self, *hooks: Hooks) -> None:
        self.hooks = hooks
        for event in EVENTS:
            targets = [getattr(hook, event) for hook in hooks if _overrides(hook, event)]
            if len(targets) == 1:
                setattr(self, event, targets[0])
            elif targets:
                setattr(self, event, _each(targets))


def fan_out(*hooks: Hooks | None) -> Hooks:
    """One Hooks for the given ones (None ignored); a single one is returned as it is."""
    present = [hook for hook in hooks if hook is not None]
    return present[0] if len(present) == 1 else FanOut(*present)


def _overrides(hook: Hooks, event: str) -> bool:
    if isinstance(hook, FanOut):
        return event in vars(hook)
    return getattr(type(hook), event) is not getattr(Hooks, event)


def place(item_index: int | None, round: int | None = None) -> dict[str, int]:
    """The keyword arguments naming a call's element and tool round, only the ones set."""
    found = {"item_index": item_index, "round": round}
    return {name: value for name, value in found.items() if value is not None}


def _each(targets: list[Callable[..., None]]) -> Callable[..., None]:
    def call_each(*args: Any, **keywords: Any) -> None:
        for target in targets:
            target(*args, **keywords)

    return call_each
