"""`pipeline test`'s reports: the JUnit XML file, each case as JSON, and values as a report shows them."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

from .assertions import MISSING
from .cases import CaseResult


def show_value(value: Any) -> str:
    if value is MISSING:
        return "(nothing)"
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 300 else text[:297] + "..."


def case_json(result: CaseResult) -> dict[str, Any]:
    return {
        "name": result.case.name,
        "passed": result.passed,
        "seconds": round(result.seconds, 3),
        "errors": result.errors,
        "runs": len(result.runs),
        "runs_passed": result.runs_passed,
        "pass_at_n": result.pass_at_n,
        "pass_all_n": result.pass_all_n,
        "cost_usd": round(result.cost_usd, 9),
        "latency_ms": round(result.latency_ms),
        "assertions": [
            {
                "assertion": item.assertion.describe(),
                "line": item.assertion.line,
                "passed": item.passed(result.pass_rate),
                "passes": item.passes,
                "runs": item.runs,
                "expected": item.assertion.expected,
                "actual": None if item.last is None or item.last.actual is MISSING else item.last.actual,
                "detail": (item.failed_check or item.last).detail if item.last else "",
            }
            for item in result.results
        ],
    }


def write_junit(results: list[CaseResult], path: str, suite_name: str) -> None:
    failures = sum(1 for result in results if not result.passed and not result.errors)
    errors = sum(1 for result in results if result.errors)
    suite = ElementTree.Element(
        "testsuite",
        name=suite_name,
        tests=str(len(results)),
        failures=str(failures),
        errors=str(errors),
        time=f"{sum(result.seconds for result in results):.3f}",
    )
    for result in results:
        testcase = ElementTree.SubElement(
            suite, "testcase", classname=suite_name, name=result.case.name, time=f"{result.seconds:.3f}"
        )
        if result.errors:
            error = ElementTree.SubElement(testcase, "error", message=result.errors[0])
            error.text = "\n".join(result.errors)
            continue
        broken = [item for item in result.results if not item.passed(result.pass_rate)]
        if broken:
            lines = []
            for item in broken:
                shown = item.failed_check or item.last
                actual = None if shown is None or shown.actual is MISSING else shown.actual
                lines.append(
                    f"{item.assertion.describe()}: passed {item.passes}/{item.runs}; "
                    f"expected {show_value(item.assertion.expected)}, actual {show_value(actual)}"
                    + (f" ({shown.detail})" if shown is not None and shown.detail else "")
                )
            failure = ElementTree.SubElement(testcase, "failure", message=lines[0])
            failure.text = "\n".join(lines)
    tree = ElementTree.ElementTree(ElementTree.Element("testsuites"))
    tree.getroot().append(suite)
    ElementTree.indent(tree)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)
