"""`pipeline test` against an earlier report (`--baseline OLD.json`) and as a pull-request summary
(`--markdown FILE`): each case's pass rate, cost and latency now and before, regressions first."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..api import Pipeline
from ..chat.catalog import Catalog
from ..errors import UsageError
from ..spec.model import ChatStep
from ..spec.model_ids import is_preset
from .cases import CaseResult

# Case states in the order a reader wants them: what broke, then what still fails, then the good news.
ORDER = ("regressed", "failing", "new failing", "fixed", "new", "passing", "removed")
MARKS = {
    "regressed": "🔴 regressed",
    "failing": "❌ failing",
    "new failing": "❌ new",
    "fixed": "🟢 fixed",
    "new": "✅ new",
    "passing": "✅",
    "removed": "➖ removed",
}


@dataclass(frozen=True)
class BaselineCase:
    """A case as an earlier `--json` report has it."""

    name: str
    passed: bool
    runs: int
    runs_passed: int
    cost_usd: float | None
    latency_ms: float | None

    @property
    def rate(self) -> float:
        return self.runs_passed / self.runs if self.runs else float(self.passed)


@dataclass(frozen=True)
class Comparison:
    """One case now and before (either may be missing) and what changed."""

    name: str
    state: str
    now: CaseResult | None
    before: BaselineCase | None


def load_baseline(path: str) -> dict[str, BaselineCase]:
    """An earlier `pipeline test --json` report, by case name; a file that is not one is a UsageError."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--baseline {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"--baseline {path} is not JSON ({exc.msg}, line {exc.lineno}): give a --json report"
        ) from None
    if not isinstance(data, list) or not all(isinstance(case, dict) and "name" in case for case in data):
        raise UsageError(f"--baseline {path} is not a `pipeline test --json` report (a list of cases with names)")
    cases = {}
    for case in data:
        runs = case.get("runs") if isinstance(case.get("runs"), int) else 0
        cases[str(case["name"])] = BaselineCase(
            name=str(case["name"]),
            passed=bool(case.get("passed")),
            runs=runs,
            runs_passed=int(case.get("runs_passed") or 0) if runs else 0,
            cost_usd=_number(case.get("cost_usd")),
            latency_ms=_number(case.get("latency_ms")),
        )
    return cases


def compare(results: list[CaseResult], baseline: dict[str, BaselineCase] | None) -> list[Comparison]:
    """Every case now (and those only the baseline has), regressions first, then in the cases' order."""
    rows = []
    for result in results:
        before = baseline.get(result.case.name) if baseline is not None else None
        rows.append(Comparison(result.case.name, _state(result, before, baseline is not None), result, before))
    if baseline is not None:
        names = {result.case.name for result in results}
        rows += [Comparison(name, "removed", None, case) for name, case in baseline.items() if name not in names]
    return sorted(rows, key=lambda row: ORDER.index(row.state))


def _state(result: CaseResult, before: BaselineCase | None, has_baseline: bool) -> str:
    if before is None:
        if has_baseline:
            return "new" if result.passed else "new failing"
        return "passing" if result.passed else "failing"
    rate = _rate(result)
    if not result.passed and (before.passed or rate < before.rate - 1e-9):
        return "regressed"
    if result.passed and rate < before.rate - 1e-9:
        return "regressed"  # still within --pass-rate, but fewer runs pass than before
    if result.passed and not before.passed:
        return "fixed"
    return "passing" if result.passed else "failing"


def markdown(title: str, rows: list[Comparison], *, repeat: int, baseline: bool) -> str:
    """The pull-request comment: totals, then one row per case, regressions first."""
    now = [row.now for row in rows if row.now is not None]
    passed = sum(result.passed for result in now)
    lines = [f"### pipeline test: {title}", ""]
    regressed = [row.name for row in rows if row.state == "regressed"]
    head = f"**{passed} of {len(now)} cases pass**"
    if baseline:
        before = [row.before for row in rows if row.before is not None]
        head += f" (baseline: {sum(case.passed for case in before)} of {len(before)})"
    cost = sum(result.cost_usd for result in now)
    latency = sum(result.latency_ms for result in now) / len(now) if now else 0.0
    head += f" · one run of every case costs ${cost:.6f} · mean latency {latency:.0f} ms"
    lines.append(head)
    if regressed:
        lines += ["", f"**Regressed:** {', '.join(regressed)}"]
    lines += ["", f"| | case | runs passed | pass@{repeat} | pass^{repeat} | cost per run | latency |"]
    lines.append("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        lines.append(_row(row, repeat))
    return "\n".join(lines) + "\n"


def _row(row: Comparison, repeat: int) -> str:
    now, before = row.now, row.before
    if now is None:
        was = (
            f"was {before.runs_passed}/{before.runs}"
            if before.runs
            else "was " + ("passing" if before.passed else "failing")
        )
        return f"| {MARKS[row.state]} | {row.name} | ({was}) | | | | |"
    rate = f"{now.runs_passed}/{len(now.runs)}"
    if before is not None:
        rate += (
            f" (was {before.runs_passed}/{before.runs})"
            if before.runs
            else (" (was passing)" if before.passed else " (was failing)")
        )
    cost = f"${now.cost_usd:.6f}" + _change(now.cost_usd, before.cost_usd if before else None)
    latency = f"{now.latency_ms:.0f} ms" + _change(now.latency_ms, before.latency_ms if before else None)
    marks = f"{_mark(now.pass_at_n)} | {_mark(now.pass_all_n)}"
    return f"| {MARKS[row.state]} | {row.name} | {rate} | {marks} | {cost} | {latency} |"


def _mark(value: bool) -> str:
    return "✅" if value else "❌"


def _change(now: float, before: float | None) -> str:
    if before is None:
        return ""
    if before == 0:
        return "" if now == 0 else " (was 0)"
    return f" ({(now - before) / before:+.0%})"


def _rate(result: CaseResult) -> float:
    return result.runs_passed / len(result.runs) if result.runs else 0.0


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Choice:
    """One model tried for one step (`--try STEP=MODEL`) and how the cases went with it."""

    step: str
    model: str
    results: tuple[CaseResult, ...]

    def row(self, *, shown: bool = True) -> dict[str, Any]:
        """The choice's line of the table (`shown`: the pass rate as a percentage, else a fraction for JSON)."""
        runs = [run for result in self.results for run in result.runs]
        passed = sum(result.passed for result in self.results)
        rate = sum(run.passed for run in runs) / len(runs) if runs else None
        return {
            "step": self.step,
            "model": self.model,
            "cases_passed": f"{passed}/{len(self.results)}",
            "pass_rate": (f"{rate:.0%}" if rate is not None else "-") if shown else rate,
            "cost_usd": sum(result.cost_usd for result in self.results),
            "mean_latency_ms": round(sum(run.latency_ms for run in runs) / len(runs)) if runs else 0,
        }

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.results)


def cheapest_passing(choices: list[Choice]) -> Choice | None:
    passing = [choice for choice in choices if choice.passed]
    return min(passing, key=lambda choice: sum(result.cost_usd for result in choice.results)) if passing else None


def parse_try(values: tuple[str, ...], step_ids: tuple[str, ...]) -> list[tuple[str, str]]:
    """`--try STEP=MODEL[,MODEL...]` (repeatable) as (step, model) choices, in the order given."""
    choices = []
    for value in values:
        step, _, models = value.partition("=")
        step = step.strip()
        names = [model.strip() for model in models.split(",") if model.strip()]
        if not step or not names:
            raise UsageError(f"--try {value!r}: write STEP=MODEL or STEP=MODEL,MODEL,...")
        if step not in step_ids:
            raise UsageError(f"--try {value!r}: the pipeline has no step '{step}'; its steps: {', '.join(step_ids)}")
        choices += [(step, name) for name in names]
    return choices


def check_try_models(choices: list[tuple[str, str]], catalog: Catalog) -> None:
    """Every model `--try` names is in the catalogue the run uses (a preset cannot be looked up: it is let
    through); an unknown one is refused with the closest known ids, before any case runs."""
    known = list(catalog.models)
    for step, model in choices:
        if is_preset(model) or model in catalog.models:
            continue
        close = difflib.get_close_matches(model, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `pipeline models` lists them"
        raise UsageError(f"--try {step}={model}: the model catalogue has no model '{model}'{hint}")


def with_model(pipeline: Pipeline, step_id: str, model: str) -> Pipeline:
    """The pipeline with one chat step asking `model` alone (its fallbacks dropped, so the table is that model's)."""
    step = pipeline.spec.step(step_id)
    if not isinstance(step, ChatStep):
        raise UsageError(f"--try: step '{step_id}' is a {step.kind} step; only chat steps have a model to try")
    steps = tuple(
        replace(each, model=model, fallback_models=()) if each.id == step_id else each for each in pipeline.spec.steps
    )
    return Pipeline(replace(pipeline.spec, steps=steps), pipeline.graph)
