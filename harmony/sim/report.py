"""The report of a simulation: in the terminal (Rich) and as one self-contained HTML file.

Per workload, a timeline of which site was active when (one row per site; ground truth
where the run has it), faults shaded, violations marked; what the checks rested on (records,
process scans, or the journal alone: then a pass proves little, and the report says so);
then per fault the detection, fence, failover and recovery times; then every violation with
its evidence and what the journals said meanwhile, and the residual-risk notes. The HTML
file has no external resources: inline SVG and CSS.
"""

from __future__ import annotations

import html
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harmony.sim.history import Interval, active_intervals
from harmony.sim.result import SimResult
from harmony.sim.timeline import FaultTiming, Window, timings, windows

WIDTH = 72


def _secs(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f} s"


def _span(result: SimResult) -> tuple[float, float]:
    monos = [e.mono for e in result.events] or [result.started]
    return min(monos), max(result.ended, max(monos))


def _rows(result: SimResult, workload: str) -> dict[str, list[Interval]]:
    rows: dict[str, list[Interval]] = {s: [] for s in result.scenario.sites}
    if result.intervals is not None and workload in result.intervals:
        found = result.intervals[workload]
    else:
        found = active_intervals(result.events, workload)
    for i in found:
        rows.setdefault(i.site, []).append(i)
    return rows


def _verdict(result: SimResult) -> tuple[str, str]:
    """(text, style) of the verdict: a pass on the journal alone is not a plain pass."""
    if not result.ok:
        return "FAIL", "fail"
    if result.journal_only:
        return "PASS (journal only: " + ", ".join(result.journal_only) + " unproven)", "weak"
    return "PASS", "pass"


def _sources(result: SimResult) -> str:
    if not result.sources:
        return "checked on: the journal only (no ground truth given)"
    return "checked on: " + "; ".join(f"{w} {s}" for w, s in result.sources.items())


# ---------------------------------------------------------------------------------- terminal
def print_report(result: SimResult, console: Console) -> None:
    sc = result.scenario
    lo, hi = _span(result)
    width = max(20, min(WIDTH, console.width - 12))
    step = max((hi - lo) / width, 1e-6)
    wins = windows(result.events)
    text, kind = _verdict(result)
    colour = {"pass": "bold green", "fail": "bold red", "weak": "bold yellow"}[kind]
    console.rule(Text.assemble("scenario ", (sc.name, "bold cyan"), "  ", (text, colour)))
    if sc.proves:
        console.print(Text(sc.proves.strip(), "italic"))
    console.print(Text(_sources(result), "yellow" if result.journal_only else "dim"))

    def col(t: float) -> int:
        return min(width - 1, max(0, int((t - lo) / step)))

    shaded: set[int] = set()
    for w in wins:
        shaded.update(range(col(w.start), col(w.end if w.end is not None else hi) + 1))
    for wl in sc.workloads:
        console.print(Text.assemble(("workload ", "dim"), (wl.name, "bold"), f"  {wl.strategy}"))
        for site, intervals in _rows(result, wl.name).items():
            line = Text(f"  {site:>8} ")
            cells = ["·" if c in shaded else " " for c in range(width)]
            for i in intervals:
                end = i.end if i.end is not None else hi
                for c in range(col(i.start), col(end) + 1):
                    cells[c] = "█" if i.end is not None else "▒"
            for c, ch in enumerate(cells):
                color = "green" if ch in "█▒" else "dim"
                line.append(ch, style=color + (" on grey23" if c in shaded else ""))
            console.print(line)
        marks = [" "] * width
        for v, mark in [(v, "~") for v in result.expected] + [(v, "!") for v in result.violations]:
            if v.workload == wl.name or not v.workload:
                marks[col(v.at)] = mark
        console.print(Text(f"  {'':>8} " + "".join(marks), "bold red"))
    console.print(Text(f"  {'':>8} 0 s{' ' * (width - 11)}{hi - lo:6.1f} s", "dim"))
    legend = "  █ active  ▒ end unknown  · during a fault  ! violation  ~ expected violation"
    console.print(Text(legend, "dim"))

    t = Table(title="faults", title_justify="left", show_lines=False)
    for h in ("at", "fault", "detect", "fence", "failover", "recovered"):
        t.add_column(h)
    for ft in timings(result.events, result.recoveries):
        t.add_row(*_timing_cells(ft, lo))
    console.print(t)
    if result.violations:
        vt = Table(title="violations", title_justify="left", style="red")
        for h in ("at", "checker", "workload", "what"):
            vt.add_column(h)
        for x in result.violations:
            what = Text(x.message)
            if x.explain:
                what.append("\n" + x.explain, "dim")
            vt.add_row(f"{x.at - lo:.1f} s", x.checker, x.workload, what)
        console.print(vt)
    if result.residuals:
        rt = Table(title="residual risk (documented; not a failure)", title_justify="left")
        for h in ("at", "workload", "what"):
            rt.add_column(h)
        for x in result.residuals:
            rt.add_row(f"{x.at - lo:.1f} s", x.workload, x.message)
        console.print(rt, style="cyan")
    if result.expected:
        et = Table(title="expected violations (a known limitation)", title_justify="left")
        for h in ("at", "checker", "workload", "what"):
            et.add_column(h)
        for x in result.expected:
            et.add_row(f"{x.at - lo:.1f} s", x.checker, x.workload, x.message)
        console.print(et, style="yellow")
    for problem in _problems(result):
        console.print(f"[red]{problem}[/]")
    console.print(f"history: {result.history_path}")


def _timing_cells(ft: FaultTiming, lo: float) -> list[str]:
    f = ft.fault
    rec = ", ".join(f"{w} {_secs(v)}" for w, v in ft.recovered.items()) or "—"
    what = f"{f.kind} {f.site} {f.reason}".replace("  ", " ").strip()
    return [
        f"{f.mono - lo:.1f} s",
        what,
        _secs(ft.detect),
        _secs(ft.fence),
        _secs(ft.failover),
        rec,
    ]


def _problems(result: SimResult) -> list[str]:
    out = []
    if result.error:
        out.append(f"error: {result.error}")
    if result.interrupted:
        out.append("interrupted before the end")
    if result.leftovers:
        out.append("processes left behind: " + "; ".join(result.leftovers))
    return out


# ---------------------------------------------------------------------------------- HTML
def _svg(result: SimResult, workload: str, wins: list[Window]) -> str:
    lo, hi = _span(result)
    rows = _rows(result, workload)
    left, width, row_h = 90, 900, 24
    height = 30 + row_h * len(rows) + 24

    def x(t: float) -> float:
        return left + (t - lo) / max(hi - lo, 1e-6) * width

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 20}" '
        f'height="{height}" font-family="sans-serif">'
    ]
    for w in wins:
        x0, x1 = x(w.start), x(w.end if w.end is not None else hi)
        title = html.escape(w.label)
        parts.append(
            f'<rect x="{x0:.1f}" y="10" width="{max(x1 - x0, 2):.1f}" height="{height - 30}" '
            f'class="fault" fill="#d33" opacity="0.12"><title>{title}</title></rect>'
        )
    for n, (site, intervals) in enumerate(rows.items()):
        y = 16 + n * row_h
        parts.append(
            f'<text x="{left - 8}" y="{y + 15}" class="site" text-anchor="end" '
            f'font-size="13">{html.escape(site)}</text>'
        )
        gy = y + row_h - 2
        parts.append(f'<line x1="{left}" y1="{gy}" x2="{left + width}" y2="{gy}" stroke="#eee"/>')
        for i in intervals:
            x0, x1 = x(i.start), x(i.end if i.end is not None else hi)
            cls = "active" if i.end is not None else "unknown"
            color = "#2da44e" if i.end is not None else "#e3a008"
            tip = (
                f"{site}: {i.start - lo:.2f} to {(i.end or hi) - lo:.2f} s, token {i.token} "
                f"({i.ended_by or 'open'})"
            )
            parts.append(
                f'<rect x="{x0:.1f}" y="{y + 3}" width="{max(x1 - x0, 1.5):.1f}" '
                f'height="{row_h - 8}" class="{cls}" fill="{color}">'
                f"<title>{html.escape(tip)}</title></rect>"
            )
            if i.token is not None and x1 - x0 > 30:
                parts.append(
                    f'<text x="{x0 + 4:.1f}" y="{y + 16}" font-size="10" fill="#fff">'
                    f"{i.token}</text>"
                )
    marked = [(v, "#cf222e", "violation") for v in result.violations]
    marked += [(v, "#bf8700", "expected") for v in result.expected]
    for v, color, cls in marked:
        if v.workload in (workload, ""):
            vx = x(v.at)
            parts.append(
                f'<g class="{cls}" stroke="{color}" fill="{color}" stroke-width="2">'
                f'<line x1="{vx:.1f}" y1="8" x2="{vx:.1f}" y2="{height - 20}"/>'
                f'<text x="{vx + 3:.1f}" y="20">!</text><title>{html.escape(v.message)}</title></g>'
            )
    ticks = 10
    for k in range(ticks + 1):
        t = lo + (hi - lo) * k / ticks
        parts.append(
            f'<text x="{x(t):.1f}" y="{height - 4}" font-size="10" fill="#666">{t - lo:.0f}s</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
h1 .pass{color:#1a7f37} h1 .fail{color:#cf222e} .weak{color:#9a6700}
.journal{color:#57606a} .sources{color:#57606a}
.fault{fill:#d33;opacity:.12} .active{fill:#2da44e} .unknown{fill:#e3a008}
.site{text-anchor:end;font-size:13px} .tok{font-size:10px;fill:#fff}
.tick{font-size:10px;fill:#666} .grid{stroke:#eee}
.violation line{stroke:#cf222e;stroke-width:2} .violation text{fill:#cf222e;font-weight:bold}
table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ddd;padding:3px 8px;font-size:13px}
th{background:#f6f8fa} .bad td{background:#ffebe9}
"""


def render_html(result: SimResult) -> str:
    sc = result.scenario
    lo, _ = _span(result)
    wins = windows(result.events)
    text, kind = _verdict(result)
    verdict = f'<span class="{kind}">{html.escape(text)}</span>'
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>harmony sim {html.escape(sc.name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html.escape(sc.name)} {verdict}</h1>",
        f"<p><em>{html.escape(sc.proves.strip())}</em></p>",
        f"<p>sites {', '.join(sc.sites)}; witnesses {', '.join(sc.witnesses) or 'none'}; "
        f"seed {result.seed if result.seed is not None else '—'}; "
        f"{result.ended - result.started:.0f} s; "
        f"history <code>{html.escape(str(result.history_path))}</code></p>",
        f"<p class='{'weak' if result.journal_only else 'sources'}'>"
        f"{html.escape(_sources(result))}</p>",
    ]
    for w in sc.workloads:
        out.append(f"<h2>{html.escape(w.name)} <small>{w.strategy}</small></h2>")
        out.append(_svg(result, w.name, wins))
    out.append(
        "<h2>faults</h2><table><tr><th>at</th><th>fault</th><th>detect</th><th>fence</th>"
        "<th>failover</th><th>recovered</th></tr>"
    )
    for ft in timings(result.events, result.recoveries):
        out.append(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _timing_cells(ft, lo)) + "</tr>"
        )
    out.append("</table>")
    out.append(f"<h2>violations ({len(result.violations)})</h2><table>")
    out.append("<tr><th>at</th><th>checker</th><th>workload</th><th>what</th></tr>")
    for v in result.violations:
        what = html.escape(v.message)
        if v.explain:
            what += f"<br><small class='journal'>{html.escape(v.explain)}</small>"
        tds = [html.escape(c) for c in (f"{v.at - lo:.1f} s", v.checker, v.workload)] + [what]
        out.append('<tr class="bad">' + "".join(f"<td>{c}</td>" for c in tds) + "</tr>")
    out.append("</table>")
    if result.residuals:
        out.append("<h2>residual risk (documented; not a failure)</h2><table class='residual'>")
        out.append("<tr><th>at</th><th>workload</th><th>what</th></tr>")
        for v in result.residuals:
            row = (f"{v.at - lo:.1f} s", v.workload, v.message)
            out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
        out.append("</table>")
    if result.expected:
        out.append("<h2>expected violations (a known limitation)</h2><table>")
        for v in result.expected:
            cells = (f"{v.at - lo:.1f} s", v.checker, v.workload, v.message)
            out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        out.append("</table>")
    for problem in _problems(result):
        out.append(f"<p class='fail'>{html.escape(problem)}</p>")
    out.append("</body></html>")
    return "\n".join(out)


def write_html(result: SimResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(result))
    return path
