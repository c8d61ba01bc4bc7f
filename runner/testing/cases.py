"""`pipeline test`: cases (an input record plus assertions) run against a pipeline and judged.

A cases file:

    cases:
      - name: billing ticket
        input: {ticket: "I was charged twice"}
        assert:
          - {path: steps.classify.output.category, equals: billing}
          - {path: output.reply, judge: "Polite, and promises no refund"}
          - {max_cost_usd: 0.01}

Each case runs `repeat` times, never from the response cache; an assertion passes when it held in
at least `pass_rate` of the runs (default: all of them). Each run passes when the record finished and
every assertion held in it: pass@N (some run passed) and pass^N (every run passed) come from those.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api import Pipeline
from ..errors import PipelineError, RunStopped, SpecError
from ..outcomes import Status
from ..settings import RunOptions, Settings
from ..spec.yamlmarks import SourceMap, load_yaml
from .assertions import MISSING, Assertion, Check, check, parse_assertion, resolve
from .judge import DEFAULT_JUDGE_MODEL, Judge


@dataclass(frozen=True)
class Case:
    name: str
    input: dict[str, Any]
    assertions: tuple[Assertion, ...]
    user: str | None
    repeat: int
    line: int | None


@dataclass(frozen=True)
class CaseFile:
    path: str
    cases: tuple[Case, ...]
    judge_model: str


@dataclass
class AssertionResult:
    assertion: Assertion
    passes: int = 0
    runs: int = 0
    last: Check | None = None
    failed_check: Check | None = None

    def passed(self, default_rate: float) -> bool:
        rate = self.assertion.pass_rate if self.assertion.pass_rate is not None else default_rate
        return self.runs > 0 and self.passes / self.runs >= rate - 1e-9


@dataclass(frozen=True)
class RunOutcome:
    """One run of a case: whether the record finished and every assertion held, its cost and latency."""

    passed: bool
    cost_usd: float
    latency_ms: int


@dataclass
class CaseResult:
    case: Case
    results: list[AssertionResult]
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    pass_rate: float = 1.0
    runs: list[RunOutcome] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.errors and all(result.passed(self.pass_rate) for result in self.results)

    @property
    def runs_passed(self) -> int:
        return sum(run.passed for run in self.runs)

    @property
    def pass_at_n(self) -> bool:
        """pass@N: at least one of the N runs passed."""
        return self.runs_passed > 0

    @property
    def pass_all_n(self) -> bool:
        """pass^N: every one of the N runs passed (a case stopped early, by a missing cassette entry say, did not)."""
        return not self.errors and bool(self.runs) and self.runs_passed == len(self.runs)

    @property
    def cost_usd(self) -> float:
        """Mean cost of a run."""
        return sum(run.cost_usd for run in self.runs) / len(self.runs) if self.runs else 0.0

    @property
    def latency_ms(self) -> float:
        """Mean latency of a run."""
        return sum(run.latency_ms for run in self.runs) / len(self.runs) if self.runs else 0.0


def load_cases(path: str | Path) -> CaseFile:
    display = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read the cases file: {exc.strerror or exc}", path=display) from None
    data, source = load_yaml(text, display)
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list) or not data["cases"]:
        raise SpecError("a cases file is a mapping with a non-empty `cases:` list", path=display, line=1)
    unknown = [key for key in data if key not in ("cases", "judge_model")]
    if unknown:
        raise source.error(
            f"unknown key '{unknown[0]}'; a cases file has `cases` and `judge_model`", (unknown[0],), key=True
        )
    cases = tuple(_case(raw, index, source) for index, raw in enumerate(data["cases"]))
    names = [case.name for case in cases]
    duplicate = next((name for name in names if names.count(name) > 1), None)
    if duplicate:
        raise SpecError(f"two cases are named {duplicate!r}; names must be unique", path=display)
    return CaseFile(display, cases, str(data.get("judge_model") or DEFAULT_JUDGE_MODEL))


def _case(raw: Any, index: int, source: SourceMap) -> Case:
    location = ("cases", index)
    if not isinstance(raw, dict):
        raise source.error("a case is a mapping with `input` and `assert`", location)
    allowed = ("name", "input", "assert", "user", "repeat")
    unknown = [key for key in raw if key not in allowed]
    if unknown:
        raise source.error(
            f"unknown key '{unknown[0]}' in a case; use {', '.join(allowed)}", (*location, unknown[0]), key=True
        )
    if not isinstance(raw.get("input"), dict):
        raise source.error("a case needs `input:`, the record to run (a mapping)", location)
    assertions = raw.get("assert") or []
    if not isinstance(assertions, list) or not assertions:
        raise source.error("a case needs `assert:`, a list of assertions", location)
    repeat = raw.get("repeat", 1)
    if not isinstance(repeat, int) or repeat < 1:
        raise source.error("repeat is a whole number of runs, at least 1", (*location, "repeat"))
    return Case(
        name=str(raw.get("name") or f"case {index + 1}"),
        input=raw["input"],
        assertions=tuple(parse_assertion(item, source, (*location, "assert", n)) for n, item in enumerate(assertions)),
        user=str(raw["user"]) if raw.get("user") is not None else None,
        repeat=repeat,
        line=source.where(location)[0],
    )


async def run_cases(
    pipeline: Pipeline,
    case_file: CaseFile,
    settings: Settings,
    *,
    transport_factory: Callable[[], Any] | None = None,
    repeat: int = 1,
    pass_rate: float = 1.0,
    on_case: Callable[[CaseResult], None] | None = None,
) -> list[CaseResult]:
    judge = Judge(settings, transport_factory, case_file.judge_model)
    results = []
    try:
        for case in case_file.cases:
            transport = transport_factory() if transport_factory else None
            result = await _run_case(pipeline, case, settings, transport, judge, max(repeat, case.repeat), pass_rate)
            results.append(result)
            if on_case is not None:
                on_case(result)
    finally:
        await judge.close()
    return results


async def _run_case(
    pipeline, case: Case, settings, transport, judge: Judge, repeat: int, pass_rate: float
) -> CaseResult:
    outcome = CaseResult(case, [AssertionResult(assertion) for assertion in case.assertions], pass_rate=pass_rate)
    started = time.monotonic()
    options = RunOptions(use_cache=False)
    async with pipeline.session(settings, transport=transport, user_id=case.user, options=options) as session:
        for attempt in range(repeat):
            run_started = time.perf_counter()
            try:
                record = await session.run(case.input, key=f"{case.name}#{attempt + 1}")
            except RunStopped as exc:
                step = getattr(exc, "step", None)
                outcome.errors.append(f"step '{step}': {exc}" if step else str(exc))
                break
            except PipelineError as exc:
                outcome.errors.append(str(exc))
                break
            latency_ms = round((time.perf_counter() - run_started) * 1000)
            view = {
                "input": case.input,
                "output": record.output,
                "steps": {step_id: step.view() for step_id, step in record.steps.items()},
                "cost_usd": record.cost_usd,
                "latency_ms": latency_ms,
                "status": record.status,
            }
            if record.status == Status.FAILED:
                error = record.error
                problem = f"the record failed: step '{error.step}' ({error.kind}), see the log"
                if problem not in outcome.errors:
                    outcome.errors.append(problem)
                outcome.runs.append(RunOutcome(False, record.cost_usd, latency_ms))
                continue  # a model that failed once may answer the next time: the other repeats still run
            run_passed = True
            for result in outcome.results:
                assertion = result.assertion
                if assertion.kind == "judge":
                    value = resolve(view, assertion.path)
                    result_check = (
                        Check(False, None, f"nothing at {assertion.path}")
                        if value is MISSING
                        else await judge.grade(assertion, value)
                    )
                else:
                    result_check = check(assertion, view)
                result.runs += 1
                result.passes += int(result_check.passed)
                result.last = result_check
                if not result_check.passed:
                    result.failed_check = result_check
                    run_passed = False
            outcome.runs.append(RunOutcome(run_passed, record.cost_usd, latency_ms))
    outcome.seconds = time.monotonic() - started
    return outcome
