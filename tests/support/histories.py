"""Tiny synthetic histories for checker tests: journal lines, simulation faults, and the
ground truth (records a copy wrote, lines a process scanner wrote)."""

from __future__ import annotations

from harmony.actors.journal import JournalEvent
from harmony.sim.checks import SIM
from harmony.sim.records import Record
from harmony.sim.scanner import Exit, Line, Proc, Scan, Watch, Watched
from harmony.sim.world import Expectation, encode_expectations


def ev(
    t: float, site: str, kind: str, workload: str = "w", token: int | None = None
) -> JournalEvent:
    return JournalEvent(
        site=site, workload=workload, kind=kind, reason="", mono=t, wall=t, token=token
    )


def run(site: str, start: float, end: float | None, token: int | None = None) -> list[JournalEvent]:
    """A copy on `site` from `start` (decision) to `end` (driver stopped); None: unknown."""
    out = [
        ev(start, site, "start", token=token),
        ev(start + 0.01, site, "driver-running", token=token),
    ]
    if end is not None:
        out.append(ev(end, site, "driver-stopped", token=token))
    return out


def fault(
    t: float, kind: str, expect: dict[str, Expectation | None], site: str = ""
) -> JournalEvent:
    return JournalEvent(
        site=site,
        workload="",
        kind=kind,
        reason="",
        mono=t,
        wall=t,
        incarnation=SIM,
        detail={"expect": encode_expectations(expect)},
    )


def history(*parts: JournalEvent | list[JournalEvent]) -> list[JournalEvent]:
    flat: list[JournalEvent] = []
    for p in parts:
        flat.extend(p if isinstance(p, list) else [p])
    return sorted(flat, key=lambda e: e.mono)


# ------------------------------------------------------------------ ground truth
def rec(
    t: float, site: str, kind: str, pid: int, token: int | None = None, workload: str = "w"
) -> Record:
    """One record a copy wrote about itself."""
    return Record(kind=kind, site=site, workload=workload, pid=pid, mono=t, wall=t, token=token)  # type: ignore[arg-type]


def ticking(
    site: str,
    pid: int,
    start: float,
    until: float,
    token: int | None = None,
    end: str | None = "stop",
    every: float = 0.05,
    workload: str = "w",
) -> list[Record]:
    """A recording copy: `start`, ticks every `every` s up to `until`, then `end` (None: it
    was SIGKILLed and wrote nothing more)."""
    out = [rec(start, site, "start", pid, token, workload)]
    n = 1
    while start + n * every <= until + 1e-9:
        out.append(rec(start + n * every, site, "tick", pid, token, workload))
        n += 1
    if end is not None:
        out.append(rec(until, site, end, pid, token, workload))
    return out


def scans(
    cids: dict[str, tuple[str, str]],
    seen: dict[str, dict[int, str | list[tuple[float, float, str]]]],
    lo: float,
    hi: float,
    period: float = 0.1,
    procs: list[Proc] | None = None,
    exits: list[Exit] | None = None,
) -> list[Line]:
    """Scanner lines from `lo` to `hi`: per containment id and pid, either one state for the
    whole time or a list of (from, to, state) stretches in which a scan sees it."""
    lines: list[Line] = [Watch(lo, period, True, [Watched(c, s, w) for c, (s, w) in cids.items()])]
    timed: list[tuple[float, Line]] = [(p.mono, p) for p in procs or []]
    timed += [(e.mono, e) for e in exits or []]
    n = 0
    while lo + n * period <= hi + 1e-9:
        t = lo + n * period
        now: dict[str, list[tuple[int, str]]] = {}
        for cid, pids in seen.items():
            for pid, how in pids.items():
                if isinstance(how, str):
                    now.setdefault(cid, []).append((pid, how))
                    continue
                for a, b, state in how:
                    if a <= t < b:
                        now.setdefault(cid, []).append((pid, state))
        timed.append((t + 0.002, Scan(t, t + 0.002, now)))
        n += 1
    return [*lines, *(line for _, line in sorted(timed, key=lambda x: x[0]))]
