"""`pipeline report`: one run as a self-contained HTML page. No script, no font, no image fetched: the
CSS is inline, the charts are inline SVG, and a Content-Security-Policy forbids anything else, so the
file opens offline and shows the same figures as `pipeline costs` and `pipeline show`."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from .dag import dag_svg
from .runreport import BatchTotals, ElementSpread, RunReport, Share
from .svg import Bar, Spread, bar_chart, column_chart, cumulative_chart, milliseconds, money, percent, spread_chart

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

_CSS = """
:root{--ink:#1c2024;--muted:#60646c;--line:#e8e8ec;--card:#fff;--bg:#f7f8fa;--accent:#4f6bed;--bad:#e5484d;
--ok:#12a594;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--ink)}
main{max-width:1180px;margin:0 auto;padding:28px 28px 48px}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:10px 16px;margin-bottom:18px}
h1{font-size:24px;margin:0;letter-spacing:-.01em}h2{font-size:15px;margin:0 0 12px;letter-spacing:.01em}
.meta{color:var(--muted);font-size:13px}.meta code{font-size:12px}
.pill{display:inline-block;border-radius:999px;padding:2px 10px;font-size:12px;font-weight:600;
background:#e6f6f4;color:#0b7a6e}.pill.failed,.pill.stopped,.pill.interrupted{background:#fdecec;color:#b4232a}
.pill.mock{background:#f1ecfb;color:#6a3eb0}.pill.running{background:#fff4e0;color:#9a5b00}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;margin-bottom:18px}
.kpi{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:12px 14px}
.kpi b{display:block;font-size:22px;font-weight:700;letter-spacing:-.01em}.kpi span{color:var(--muted);font-size:12px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:16px}
section{background:var(--card);border:1px solid var(--line);border-radius:14px;padding:16px 18px;margin-bottom:16px}
.grid section{margin-bottom:0}.wide{margin-top:16px}
.dagwrap{display:flex;justify-content:center;overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;padding:6px 8px;
border-bottom:1px solid var(--line)}th{color:var(--muted);font-weight:600;font-size:12px}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.kind{font-weight:600;color:var(--bad)}.empty{color:var(--muted);margin:4px 0}.note{color:var(--muted);font-size:12px}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:24px}
"""


def render_report(report: RunReport, *, generated_by: str = "pipeline") -> str:
    run = report.run
    status = str(run.get("status") or "")
    sections = [
        _section(
            "Steps", f'<div class="dagwrap">{dag_svg(report.dag, report.step_share)}</div>' + _dag_note(report), "dag"
        ),
        '<div class="grid">',
        _section("Spend by step", _shares_chart(report.by_step, "by-step"), "by-step"),
        _section("Spend by module", _shares_chart(report.by_module, "by-module"), "by-module"),
        _section("Spend by model", _shares_chart(report.by_model, "by-model"), "by-model"),
        _section("Spend by user", _shares_chart(report.by_user, "by-user"), "by-user"),
        "</div>",
        _section("Latency per step", _latency(report), "latency", wide=True),
        '<div class="grid wide">',
        _section("Spend over time", cumulative_chart(report.timeline), "timeline"),
        _section("Failures", _failures(report), "failures"),
        "</div>",
    ]
    if report.spreads:
        sections.append(
            _section("for_each: spend per element", "".join(map(_spread, report.spreads)), "for-each", wide=True)
        )
    if report.providers:
        sections.append(_section("Providers tried", _providers(report), "providers", wide=True))
    if report.batch is not None:
        sections.append(_section("Batch API", _batches(report.batch), "batches", wide=True))
    badges = f'<span class="pill {escape(status)}">{escape(status)}</span>'
    if run.get("mock"):
        badges += ' <span class="pill mock">mock: the fake\'s costs, nothing billed</span>'
    generated = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(str(run.get("pipeline")))} · {escape(str(run.get("id")))}</title>
<style>{_CSS}</style></head>
<body><main data-run="{escape(str(run.get("id")))}" data-total-usd="{report.cost_usd!r}">
<header><h1>{escape(str(run.get("pipeline")))}</h1>{badges}
<span class="meta">run <code>{escape(str(run.get("id")))}</code> · started {escape(str(run.get("started_at")))}
{_duration(report)}</span></header>
{_kpis(report)}
{"".join(sections)}
<footer>Written by {escape(generated_by)} at {generated}. One file: no script, nothing fetched.</footer>
</main></body></html>
"""


def _section(title: str, body: str, name: str, *, wide: bool = False) -> str:
    css = ' class="wide"' if wide else ""
    return f'<section data-section="{name}"{css}><h2>{escape(title)}</h2>{body}</section>'


def _kpis(report: RunReport) -> str:
    cards = [
        ("total-usd", money(report.cost_usd), "spent"),
        ("calls", f"{report.calls:,}", "billed calls"),
        ("cache-hits", f"{report.cache_hits:,}", "served from the cache"),
        ("records-ok", f"{report.records_ok:,}", "records ok"),
        ("records-failed", f"{report.records_failed:,}", "records failed"),
        ("tokens", f"{report.prompt_tokens + report.completion_tokens:,}", "tokens in and out"),
    ]
    return (
        '<div class="kpis">'
        + "".join(
            f'<div class="kpi" data-kpi="{name}"><b>{escape(value)}</b><span>{escape(label)}</span></div>'
            for name, value, label in cards
        )
        + "</div>"
    )


def _duration(report: RunReport) -> str:
    return f"· took {report.duration_s:.1f} s" if report.duration_s is not None else "· not finished"


def _dag_note(report: RunReport) -> str:
    if report.dag_known:
        return '<p class="note">Each card: the step\'s spend, its share of the run and its billed calls.</p>'
    return '<p class="note">The pipeline file was not found: steps are shown without their edges.</p>'


def _shares_chart(shares: tuple[Share, ...], chart: str) -> str:
    bars = [Bar(share.label, share.cost_usd, f"· {percent(share.share)} · {_calls(share.calls)}") for share in shares]
    return bar_chart(bars, chart=chart)


def _calls(count: int) -> str:
    return f"{count} call" if count == 1 else f"{count:,} calls"


def _latency(report: RunReport) -> str:
    rows = [Spread(item.step, item.p50, item.p90, item.p99, item.max) for item in report.latency]
    table = "".join(
        f'<tr data-step="{escape(item.step)}"><td>{escape(item.step)}</td><td class="num">{item.calls}</td>'
        + "".join(f'<td class="num">{milliseconds(value)}</td>' for value in (item.p50, item.p90, item.p99, item.max))
        + "</tr>"
        for item in report.latency
    )
    head = '<tr><th>step</th><th class="num">calls</th>' + "".join(
        f'<th class="num">{name}</th>' for name in ("p50", "p90", "p99", "max")
    )
    legend = '<p class="note">Bar: median; pale bar: p90; line: p99; dot: the slowest call (client-measured).'
    if report.batch is not None and report.batch.batched_calls:
        legend += (
            f" The {_calls(report.batch.batched_calls)} made through the Batch API are left out: their latency"
            " is their batch's wait, not the call's."
        )
    legend += "</p>"
    return spread_chart(rows) + legend + (f"<table>{head}</tr>{table}</table>" if table else "")


def _failures(report: RunReport) -> str:
    parts = []
    if report.failures:
        rows = "".join(
            f'<tr data-kind="{escape(group.kind)}"><td class="kind">{escape(group.kind)}</td>'
            f'<td class="num">{group.records}</td><td>{escape(", ".join(group.steps))}</td>'
            f"<td>{escape(group.message or '')}</td></tr>"
            for group in report.failures
        )
        parts.append(
            f'<table><tr><th>kind</th><th class="num">records</th><th>step</th><th>summary</th></tr>{rows}</table>'
        )
    else:
        parts.append('<p class="empty">no record failed</p>')
    checked = [share for share in report.outcomes if share.label != "ok"]
    if checked:
        bars = [Bar(share.label, share.calls, f"· {money(share.cost_usd)} billed") for share in checked]
        parts.append('<h2 style="margin-top:16px">Billed replies that failed a check</h2>')
        parts.append(bar_chart(bars, formatter=lambda value: f"{value:.0f}", chart="outcomes"))
    return "".join(parts)


def _spread(spread: ElementSpread) -> str:
    columns = [(str(index), cost) for index, cost in spread.by_index]
    summary = (
        f'<p class="note" data-step="{escape(spread.step)}"><b>{escape(spread.step)}</b>: {spread.elements} element(s)'
        f" over {spread.records} record(s), up to {spread.most_elements} in one record; per element:"
        f" median {money(spread.per_element_p50)}, most {money(spread.per_element_max)}. Columns: each element"
        " index's spend over all records.</p>"
    )
    return summary + column_chart(columns, chart=f"for-each-{spread.step}")


def _providers(report: RunReport) -> str:
    rows = "".join(
        f'<tr><td>{escape(name)}</td><td class="num">{answered}</td><td class="num">{failed}</td></tr>'
        for name, answered, failed in report.providers
    )
    return (
        f'<p class="note">From {report.generations} generation record(s) of {report.calls} billed call(s)'
        " (`--fetch-generations` or `pipeline enrich`).</p>"
        '<table><tr><th>provider</th><th class="num">answered</th><th class="num">failed attempts</th></tr>'
        f"{rows}</table>"
    )


def _batches(totals: BatchTotals) -> str:
    said = f"{_calls(totals.batched_calls)} went through batches, billed {money(totals.batched_usd)}"
    if totals.normal_usd is not None:
        said += (
            f"; the same requests through the normal API, at the same prompt-caching discount:"
            f" {money(totals.normal_usd)} (saved {money(totals.normal_usd - totals.batched_usd)})"
        )
    said += f". {_calls(totals.unbatched_calls)} went through the normal API: {money(totals.unbatched_usd)}."
    rows = "".join(
        f'<tr data-batch="{escape(row.batch_id)}"><td><code>{escape(row.batch_id)}</code></td>'
        f"<td>{escape(row.step)}</td><td>{escape(row.model)}</td><td>{escape(row.status)}</td>"
        f'<td class="num">{row.requests:,}</td>'
        + "".join(
            f'<td class="num">{money(value) if value is not None else "-"}</td>'
            for value in (row.billed_usd, row.normal_usd)
        )
        + "</tr>"
        for row in totals.batches
    )
    head = (
        '<tr><th>batch</th><th>step</th><th>model</th><th>status</th><th class="num">requests</th>'
        '<th class="num">billed</th><th class="num">normal API</th></tr>'
    )
    return f'<p class="note" data-batch-summary>{escape(said)}</p><table>{head}{rows}</table>'
