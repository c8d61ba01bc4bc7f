"""Charts as inline SVG text, for the run report: horizontal bars, a cumulative line, latency ranges and
columns. Pure functions from numbers to markup; every label is escaped here, and the charts scale with
their container (a viewBox, width 100%)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

PALETTE = ("#4f6bed", "#12a594", "#e5484d", "#f5a524", "#8e4ec6", "#0090ff", "#d6409f", "#46a758")
INK, MUTED, GRID = "#1c2024", "#60646c", "#e8e8ec"


def money(value: float) -> str:
    """Dollars with enough digits to tell small calls apart: $12.35, $0.0123, $0.000037."""
    if value == 0:
        return "$0"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    digits = max(4, 2 - math.floor(math.log10(abs(value))) + 1)
    return f"${value:.{min(digits, 8)}f}"


def percent(share: float) -> str:
    return f"{share * 100:.1f}%" if share < 0.995 else "100%"


def milliseconds(value: float) -> str:
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def text(x: float, y: float, content: str, *, size: int = 12, fill: str = INK, anchor: str = "start", weight=400):
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{fill}" text-anchor="{anchor}"'
        f' font-weight="{weight}">{escape(content)}</text>'
    )


def clip(label: str, width: int) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    note: str = ""  # shown after the value (e.g. "42% · 12 calls")


def bar_chart(
    bars: Sequence[Bar], *, formatter: Callable[[float], str] = money, chart: str = "bars", width: int = 480
) -> str:
    """One row per bar, in the order given: the label left, the value and note right, the bar beneath."""
    if not bars:
        return '<p class="empty">nothing recorded</p>'
    row = 40
    top = max((bar.value for bar in bars), default=0) or 1
    height = row * len(bars)
    parts = [_open(width, height, chart)]
    for index, bar in enumerate(bars):
        y = index * row
        length = max(3.0, width * bar.value / top) if bar.value > 0 else 0
        color = PALETTE[index % len(PALETTE)]
        value = formatter(bar.value)
        parts.append(f'<g class="bar" data-label="{escape(bar.label)}" data-value="{bar.value!r}">')
        parts.append(f"<title>{escape(bar.label)}: {escape(value)} {escape(bar.note)}</title>")
        parts.append(text(0, y + 14, clip(bar.label, 40), size=13))
        parts.append(
            f'<text x="{width}" y="{y + 14}" font-size="13" text-anchor="end" fill="{INK}">'
            f'<tspan font-weight="600">{escape(value)}</tspan>'
            f'<tspan fill="{MUTED}" font-size="11.5"> {escape(bar.note)}</tspan></text>'
        )
        parts.append(f'<rect x="0" y="{y + 21}" width="{width}" height="10" rx="5" fill="{GRID}" opacity=".6"/>')
        parts.append(f'<rect x="0" y="{y + 21}" width="{length:.1f}" height="10" rx="5" fill="{color}"/>')
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def cumulative_chart(points: Sequence[tuple[float, float]], *, chart: str = "timeline", width: int = 480) -> str:
    """Spend over time: (seconds since the start, dollars so far) as a stepped area with axes."""
    if not points:
        return '<p class="empty">nothing recorded</p>'
    height, left, right, top, bottom = 240, 78, 12, 10, 26
    x_max = max(points[-1][0], 1e-3)
    y_max = max(points[-1][1], 1e-12)
    plot_w, plot_h = width - left - right, height - top - bottom

    def at(x: float, y: float) -> tuple[float, float]:
        return left + plot_w * x / x_max, top + plot_h * (1 - y / y_max)

    parts = [_open(width, height, chart)]
    for tick in range(5):
        y_value = y_max * tick / 4
        _, y = at(0, y_value)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(text(left - 8, y + 4, money(y_value), size=11, fill=MUTED, anchor="end"))
    for tick in range(5):
        x, _ = at(x_max * tick / 4, 0)
        anchor = "start" if tick == 0 else "end" if tick == 4 else "middle"
        parts.append(text(x, height - 6, _seconds(x_max * tick / 4), size=11, fill=MUTED, anchor=anchor))
    path = [at(0, 0)]
    previous = 0.0
    for x_value, y_value in points:
        path += [at(x_value, previous), at(x_value, y_value)]
        previous = y_value
    path.append(at(x_max, previous))
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in path)
    base_left, base_right = at(0, 0), at(x_max, 0)
    area = f"{base_left[0]:.1f},{base_left[1]:.1f} {line} {base_right[0]:.1f},{base_right[1]:.1f}"
    parts.append(f'<polygon points="{area}" fill="{PALETTE[0]}" opacity=".14"/>')
    parts.append(f'<polyline points="{line}" fill="none" stroke="{PALETTE[0]}" stroke-width="2"/>')
    end_x, end_y = at(x_max, previous)
    parts.append(f'<circle cx="{end_x:.1f}" cy="{end_y:.1f}" r="4" fill="{PALETTE[0]}"/>')
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Spread:
    """One row of a latency chart: the 50th, 90th and 99th percentiles and the maximum."""

    label: str
    p50: float
    p90: float
    p99: float
    top: float


def spread_chart(rows: Sequence[Spread], *, chart: str = "latency", width: int = 1080) -> str:
    """Per row: a thick bar to the median, a thinner one to p90, a whisker to p99 and a dot at the maximum."""
    if not rows:
        return '<p class="empty">no calls were made</p>'
    row, label_w = 34, 170
    plot_w = width - label_w - 30
    top = max(spread.top for spread in rows) or 1
    height = row * len(rows) + 26

    def x(value: float) -> float:
        return label_w + plot_w * value / top

    parts = [_open(width, height, chart)]
    for tick in range(5):
        value = top * tick / 4
        parts.append(f'<line x1="{x(value):.1f}" x2="{x(value):.1f}" y1="0" y2="{height - 20}" stroke="{GRID}"/>')
        parts.append(text(x(value), height - 6, milliseconds(value), size=11, fill=MUTED, anchor="middle"))
    for index, spread in enumerate(rows):
        y = index * row + 6
        color = PALETTE[index % len(PALETTE)]
        parts.append(f'<g class="latency-row" data-step="{escape(spread.label)}">')
        parts.append(
            f"<title>{escape(spread.label)}: p50 {milliseconds(spread.p50)}, p90 {milliseconds(spread.p90)},"
            f" p99 {milliseconds(spread.p99)}, max {milliseconds(spread.top)}</title>"
        )
        parts.append(text(0, y + 15, clip(spread.label, 24), size=13))
        parts.append(
            f'<line x1="{x(0):.1f}" x2="{x(spread.p99):.1f}" y1="{y + 11}" y2="{y + 11}" stroke="{color}"'
            ' stroke-width="2"/>'
        )
        parts.append(
            f'<rect x="{x(0):.1f}" y="{y + 5}" width="{x(spread.p90) - x(0):.1f}" height="12" rx="3"'
            f' fill="{color}" opacity=".35"/>'
        )
        parts.append(
            f'<rect x="{x(0):.1f}" y="{y + 5}" width="{x(spread.p50) - x(0):.1f}" height="12" rx="3" fill="{color}"/>'
        )
        parts.append(
            f'<circle cx="{x(spread.top):.1f}" cy="{y + 11}" r="3.5" fill="#fff" stroke="{color}" stroke-width="2"/>'
        )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def column_chart(columns: Sequence[tuple[str, float]], *, chart: str = "columns", width: int = 1080) -> str:
    """Vertical columns (a for_each step's spend per element index), labelled below when there is room."""
    if not columns:
        return '<p class="empty">nothing recorded</p>'
    height, bottom, left = 170, 26, 78
    top = max(value for _, value in columns) or 1
    slot = (width - left) / len(columns)
    bar = max(2.0, min(36.0, slot * 0.7))
    plot_h = height - bottom - 10
    parts = [_open(width, height, chart)]
    for tick in range(3):
        value = top * tick / 2
        y = 10 + plot_h * (1 - value / top)
        parts.append(f'<line x1="{left}" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(text(left - 8, y + 4, money(value), size=11, fill=MUTED, anchor="end"))
    every = max(1, math.ceil(len(columns) / 24))
    for index, (label, value) in enumerate(columns):
        x = left + slot * index + (slot - bar) / 2
        length = plot_h * value / top
        parts.append(
            f'<rect class="column" data-label="{escape(label)}" x="{x:.1f}" y="{10 + plot_h - length:.1f}"'
            f' width="{bar:.1f}" height="{length:.1f}" rx="2" fill="{PALETTE[5]}">'
            f"<title>element {escape(label)}: {money(value)}</title></rect>"
        )
        if index % every == 0:
            parts.append(text(x + bar / 2, height - 8, label, size=11, fill=MUTED, anchor="middle"))
    parts.append("</svg>")
    return "".join(parts)


def _open(width: int, height: float, chart: str) -> str:
    return (
        f'<svg class="chart" data-chart="{escape(chart)}" viewBox="0 0 {width} {height:.0f}" width="100%"'
        f' role="img" xmlns="http://www.w3.org/2000/svg" font-family="inherit">'
    )


def _seconds(value: float) -> str:
    if value >= 120:
        return f"{value / 60:.1f} min"
    if value < 1:
        return f"{value:.2f} s"
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"
