"""Step kinds at run time: the runner protocol (base) and one runner module per kind (chat, code, ...).

A new kind is one module that defines its frozen spec value (a `StepBase`), a `spec.kinds.StepKind`
(the YAML keys that mark it, its JSON Schema, its builder) and a runner, and calls `register` once.

May import: runner.errors, runner.spec, runner.plan, runner.chat and the rest of runner.run.
Inside, one way: base <- tools <- chat; base <- code; chat, code <- this module.
"""

from __future__ import annotations

from ...spec.kinds import StepKind, register_kind, unregister_kind
from .base import MakeRunner, Scope, Services, StepRunner, render_failed
from .chat import ChatRunner
from .code import CodeRunner

_RUNNERS: dict[str, MakeRunner] = {"chat": ChatRunner, "code": CodeRunner}  # the built-in kinds (runner.spec.load)


def register(kind: StepKind, make_runner: MakeRunner) -> None:
    """Add a step kind: the file recognises it by `kind.keys`, and its steps run through `make_runner(services)`."""
    register_kind(kind)
    _RUNNERS[kind.name] = make_runner


def unregister(name: str) -> None:
    """Take a kind registered with `register` away again (tests)."""
    if name not in ("chat", "code"):
        unregister_kind(name)
        _RUNNERS.pop(name, None)


def runner_factory(kind: str) -> MakeRunner:
    return _RUNNERS[kind]


__all__ = ["Scope", "Services", "StepRunner", "register", "render_failed", "runner_factory", "unregister"]
