"""Rows of a report (costs, runs, a dry-run estimate) as an aligned table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

MONEY_COLUMNS = frozenset({"cost_usd", "low_usd", "high_usd", "byok_upstream_usd", "cache_saved_usd", "normal_api_usd"})


def format_rows(rows: list[dict[str, Any]], output_format: str, *, total: bool = True, empty: str = "nothing") -> str:
    if output_format == "json":
        return json.dumps(rows, indent=2)
    if not rows:
        return "" if output_format == "csv" else empty
    columns = list(rows[0])
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()
    cells = [[_cell(column, row[column]) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[index]) for line in cells)) for index, column in enumerate(columns)]
    numeric = [isinstance(rows[0][column], int | float) for column in columns]

    def line(values: list[str]) -> str:
        return "  ".join(
            value.rjust(width) if is_number else value.ljust(width)
            for value, width, is_number in zip(values, widths, numeric, strict=True)
        ).rstrip()

    lines = [line(columns), line(["-" * width for width in widths]), *(line(cell_row) for cell_row in cells)]
    if total and "cost_usd" in columns:
        lines.append(f"total: {money(sum(row['cost_usd'] or 0 for row in rows))}")
    return "\n".join(lines)


def money(value: float) -> str:
    return f"${value:.6f}" if value < 0.01 else f"${value:.4f}"


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if column in MONEY_COLUMNS:
        return money(value)
    return str(value)
