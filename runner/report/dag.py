"""The run report's DAG: steps in layers (each below its deepest parent), ordered within a layer by
their parents' places to keep edges short, drawn as SVG cards with each step's spend and share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from .runreport import DagStep, Share
from .svg import INK, MUTED, PALETTE, clip, money, percent, text

NODE_W, NODE_H, GAP_X, GAP_Y, MARGIN = 224, 78, 36, 56, 12


def layers(steps: Sequence[DagStep]) -> list[list[str]]:
    """Steps by depth (the longest path from a root), each layer ordered by its parents' mean position."""
    known = {step.id: step for step in steps}
    depth: dict[str, int] = {}

    def depth_of(step_id: str, visiting: frozenset[str] = frozenset()) -> int:
        if step_id not in depth:
            parents = [parent for parent in known[step_id].parents if parent in known and parent not in visiting]
            depth[step_id] = 1 + max((depth_of(parent, visiting | {step_id}) for parent in parents), default=-1)
        return depth[step_id]

    for step in steps:
        depth_of(step.id)
    rows: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for step in steps:  # file order first
        rows[depth[step.id]].append(step.id)
    place: dict[str, float] = {}
    for row in rows:
        for index, step_id in enumerate(row):
            place[step_id] = index
        row.sort(key=lambda step_id: _mean([place[p] for p in known[step_id].parents if p in place], place[step_id]))
        for index, step_id in enumerate(row):
            place[step_id] = index
    return rows


def dag_svg(steps: Sequence[DagStep], share_of: Callable[[str], Share]) -> str:
    """Top to bottom; left to right when a layer is wider than the graph is deep (a fan-out)."""
    if not steps:
        return '<p class="empty">no steps</p>'
    rows = layers(steps)
    widest = max(len(row) for row in rows)
    across = widest > max(len(rows), 3)  # layers as columns
    along_gap, beside_gap = (GAP_Y + 24, 18) if across else (GAP_Y, GAP_X)
    along_step, beside_step = (NODE_W, NODE_H) if across else (NODE_H, NODE_W)
    extent = widest * beside_step + (widest - 1) * beside_gap  # across the layers
    length = len(rows) * along_step + (len(rows) - 1) * along_gap  # along them
    width, height = (length, extent) if across else (extent, length)
    width, height = width + 2 * MARGIN, height + 2 * MARGIN
    position: dict[str, tuple[float, float]] = {}
    for depth, row in enumerate(rows):
        offset = MARGIN + (extent - (len(row) * beside_step + (len(row) - 1) * beside_gap)) / 2
        for index, step_id in enumerate(row):
            beside = offset + index * (beside_step + beside_gap)
            along = MARGIN + depth * (along_step + along_gap)
            position[step_id] = (along, beside) if across else (beside, along)
    top_share = max((share_of(step.id).share for step in steps), default=0) or 1
    parts = [
        f'<svg class="dag" data-chart="dag" viewBox="0 0 {width:.0f} {height:.0f}" width="100%"'
        f' style="max-width:{width:.0f}px" role="img" xmlns="http://www.w3.org/2000/svg" font-family="inherit">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7"'
        f' orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{MUTED}"/></marker></defs>',
    ]
    for step in steps:
        for parent in step.parents:
            if parent in position:
                parts.append(_edge(position[parent], position[step.id], parent, step.id, across=across))
    for step in steps:
        parts.append(_node(step, position[step.id], share_of(step.id), top_share))
    parts.append("</svg>")
    return "".join(parts)


def _edge(start: tuple[float, float], end: tuple[float, float], parent: str, child: str, *, across: bool) -> str:
    if across:  # right side to left side
        x1, y1, x2, y2 = start[0] + NODE_W, start[1] + NODE_H / 2, end[0] - 2, end[1] + NODE_H / 2
        bend = (x2 - x1) / 2
        curve = f"C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
    else:  # bottom to top
        x1, y1, x2, y2 = start[0] + NODE_W / 2, start[1] + NODE_H, end[0] + NODE_W / 2, end[1] - 2
        bend = (y2 - y1) / 2
        curve = f"C{x1:.1f},{y1 + bend:.1f} {x2:.1f},{y2 - bend:.1f} {x2:.1f},{y2:.1f}"
    return (
        f'<path class="dag-edge" data-from="{escape(parent)}" data-to="{escape(child)}"'
        f' d="M{x1:.1f},{y1:.1f} {curve}"'
        f' fill="none" stroke="{MUTED}" stroke-opacity=".55" stroke-width="1.6" marker-end="url(#arrow)"/>'
    )


def _node(step: DagStep, at: tuple[float, float], share: Share, top_share: float) -> str:
    x, y = at
    calls = f"{share.calls} call" if share.calls == 1 else f"{share.calls} calls"
    heat = share.share / top_share if top_share else 0
    accent = PALETTE[0]
    bar = (NODE_W - 24) * share.share
    badge = (
        f'<rect x="{x + NODE_W - 70:.1f}" y="{y + 9:.1f}" width="60" height="16" rx="8" fill="{PALETTE[4]}"'
        f' opacity=".15"/>{text(x + NODE_W - 40, y + 21, "for_each", size=10, fill=PALETTE[4], anchor="middle")}'
        if step.for_each
        else ""
    )
    return (
        f'<g class="dag-node" data-step="{escape(step.id)}" data-cost-usd="{share.cost_usd!r}"'
        f' data-share="{share.share:.6f}"{" data-for-each" if step.for_each else ""}>'
        f"<title>{escape(step.id)}: {money(share.cost_usd)} ({percent(share.share)} of the run),"
        f" {share.calls} billed call(s)</title>"
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{NODE_W}" height="{NODE_H}" rx="12" fill="#fff"'
        f' stroke="{accent}" stroke-opacity="{0.25 + 0.75 * heat:.2f}" stroke-width="{1.2 + 1.6 * heat:.1f}"/>'
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{NODE_W}" height="{NODE_H}" rx="12" fill="{accent}"'
        f' opacity="{0.03 + 0.12 * heat:.3f}"/>'
        + text(x + 12, y + 22, clip(step.id, 20 if step.for_each else 26), size=14, weight=700, fill=INK)
        + badge
        + text(x + 12, y + 39, clip(step.detail, 36), size=10.5, fill=MUTED)
        + text(x + 12, y + 58, money(share.cost_usd), size=13, weight=600)
        + text(
            x + NODE_W - 12,
            y + 58,
            f"{percent(share.share)} · {calls}",
            size=11,
            fill=MUTED,
            anchor="end",
        )
        + f'<rect x="{x + 12:.1f}" y="{y + 66:.1f}" width="{NODE_W - 24}" height="4" rx="2" fill="{accent}"'
        ' opacity=".12"/>'
        f'<rect x="{x + 12:.1f}" y="{y + 66:.1f}" width="{bar:.1f}" height="4" rx="2" fill="{accent}"/>'
        "</g>"
    )


def _mean(values: list[float], default: float) -> float:
    return sum(values) / len(values) if values else default
