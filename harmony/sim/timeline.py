"""What a report shows, computed from a history: fault windows and per-fault timings.

Kept apart from the rendering (terminal and HTML draw the same facts). A *window* is the
time a fault lasted (a partition until the heal, a kill until the restart, a pause until the
resume); *timings* say how fast the mesh reacted to one fault: detection (first site to see
the faulted site silent), fence (first fence ordered), failover (first copy running on
another site) and recovery (desired state reached, from the recovery checker).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harmony.actors.journal import JournalEvent
from harmony.sim.checks import Recovery, fault_events

LINK_FAULTS = {"partition", "link-cut", "delay", "drop"}
CLOSES = {
    "site-killed": "site-restarted",
    "paused": "resumed",
    "site-frozen": "site-thawed",
    "flag-set": "flag-cleared",
    "disk-filled": "disk-freed",
}


@dataclass(frozen=True)
class Window:
    kind: str
    site: str
    label: str
    start: float
    end: float | None


@dataclass(frozen=True)
class FaultTiming:
    fault: JournalEvent
    detect: float | None
    fence: float | None
    failover: float | None
    recovered: dict[str, float | None]


def windows(events: Sequence[JournalEvent]) -> list[Window]:
    out: list[Window] = []
    open_links: list[JournalEvent] = []
    open_sites: dict[tuple[str, str], JournalEvent] = {}
    for e in fault_events(events):
        if e.kind in LINK_FAULTS:
            open_links.append(e)
        elif e.kind == "heal":
            for f in open_links:
                out.append(Window(f.kind, f.site, f"{f.kind} {f.reason}", f.mono, e.mono))
            open_links = []
        elif e.kind in CLOSES:
            open_sites[(CLOSES[e.kind], e.site)] = e
        elif (e.kind, e.site) in open_sites:
            f = open_sites.pop((e.kind, e.site))
            out.append(Window(f.kind, f.site, f"{f.kind} {f.site}", f.mono, e.mono))
        else:  # instantaneous (a server killed, restarted by its agent)
            out.append(Window(e.kind, e.site, f"{e.kind} {e.site}", e.mono, e.mono))
    for f in [*open_links, *open_sites.values()]:
        out.append(Window(f.kind, f.site, f"{f.kind} {f.site or f.reason}", f.mono, None))
    return sorted(out, key=lambda w: w.start)


def _first(
    events: Sequence[JournalEvent], after: float, until: float, pred: object
) -> float | None:
    for e in events:
        if after <= e.mono < until and pred(e):  # type: ignore[operator]
            return e.mono - after
    return None


def timings(events: Sequence[JournalEvent], recoveries: Sequence[Recovery]) -> list[FaultTiming]:
    faults = fault_events(events)
    journal = [e for e in events if e.incarnation != "sim"]
    all_faults = fault_events(events)
    out = []
    for f in faults:
        undo = ("heal", "resumed", "site-thawed", "flag-cleared", "disk-freed")
        later = [g.mono for g in all_faults if g.mono > f.mono and g.kind in undo]
        nxt = [g.mono for g in all_faults if g.mono > f.mono]
        until = nxt[0] if nxt else float("inf")
        horizon = max(until, later[0] if later else until)

        def about(e: JournalEvent, f: JournalEvent = f) -> bool:
            return e.kind == "peer-silent" and (not f.site or e.detail.get("site_of") == f.site)

        def moved(e: JournalEvent, f: JournalEvent = f) -> bool:
            return e.kind == "driver-running" and e.site != f.site

        recovered = {r.workload: r.took for r in recoveries if r.fault is f}
        out.append(
            FaultTiming(
                f,
                _first(journal, f.mono, horizon, about),
                _first(journal, f.mono, horizon, lambda e: e.kind in ("fence", "tether-fenced")),
                _first(journal, f.mono, until, moved),
                recovered,
            )
        )
    return out
