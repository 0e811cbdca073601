"""Histories: every site's journal merged on the machine-wide monotonic clock, and the
active intervals of each workload that the safety checks reason about.

A copy counts as active from the moment its site *decided* to start it (the `start` record,
written before the process is spawned) until the driver reported it gone (stopped, fenced,
exited for good). A copy whose end is unknown — its site was killed — stays active until
the site's agent is seen again (`agent-start`) or, failing that, until the end of the
history: an operation with an unknown outcome counts as possibly active.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from harmony.actors.journal import JournalEvent, read_journal

ENDS = {"driver-stopped", "driver-fenced", "driver-failed", "tether-fenced"}
SITE_DOWN = {"agent-start", "site-killed"}


@dataclass(frozen=True)
class Interval:
    site: str
    workload: str
    start: float
    end: float | None
    token: int | None
    ended_by: str = ""

    def overlaps(self, other: Interval, horizon: float) -> bool:
        a_end = self.end if self.end is not None else horizon
        b_end = other.end if other.end is not None else horizon
        return self.start < b_end and other.start < a_end


def load_history(journals: Iterable[Path]) -> list[JournalEvent]:
    events: list[JournalEvent] = []
    for path in journals:
        if path.exists():
            events.extend(read_journal(path))
    return sorted(events, key=lambda e: e.mono)


def active_intervals(events: list[JournalEvent], workload: str) -> list[Interval]:
    open_: dict[str, tuple[float, int | None]] = {}
    out: list[Interval] = []

    def close(site: str, at: float | None, why: str) -> None:
        started = open_.pop(site, None)
        if started is not None:
            out.append(Interval(site, workload, started[0], at, started[1], why))

    for e in events:
        if e.kind in SITE_DOWN:
            # The agent died (a fault the simulation injected) or came back as a new
            # incarnation: its workloads died with it (process-driver pdeathsig).
            close(e.site, e.mono, e.kind)
            continue
        if e.workload != workload:
            continue
        if e.kind in ("start", "promote") and e.site not in open_:
            open_[e.site] = (e.mono, e.token)
        elif e.kind in ENDS or (e.kind == "driver-exited" and "restarting in" not in e.reason):
            close(e.site, e.mono, e.kind)
    for site, (start, token) in open_.items():
        out.append(Interval(site, workload, start, None, token, "unknown"))
    return sorted(out, key=lambda i: i.start)


def overlapping(intervals: list[Interval], horizon: float) -> list[tuple[Interval, Interval]]:
    """Pairs of intervals on different sites that were active at the same time."""
    bad = []
    for i, a in enumerate(intervals):
        for b in intervals[i + 1 :]:
            if a.site != b.site and a.overlaps(b, horizon):
                bad.append((a, b))
    return bad


def fault(site: str, kind: str, reason: str, mono: float, wall: float) -> JournalEvent:
    """A fault the simulation injected, as a history event (e.g. ``site-killed``)."""
    return JournalEvent(site=site, workload="", kind=kind, reason=reason, mono=mono, wall=wall)


def token_regressions(intervals: list[Interval]) -> list[tuple[Interval, Interval]]:
    """Handovers whose fencing token did not grow.

    From one site to another the token must strictly grow; the same site may run again
    with the same token (a restart under the same lease).
    """
    with_token = [i for i in intervals if i.token is not None]
    bad = []
    for a, b in itertools.pairwise(with_token):
        assert a.token is not None and b.token is not None
        if b.token < a.token or (b.site != a.site and b.token == a.token):
            bad.append((a, b))
    return bad


def merge(journals: Iterable[Path], extra: Iterable[JournalEvent] = ()) -> list[JournalEvent]:
    """Every site's journal and the simulation's own events, ordered by monotonic time
    (one clock for every process of this machine)."""
    return sorted([*load_history(journals), *extra], key=lambda e: e.mono)


def write_history(path: Path, events: Iterable[JournalEvent]) -> Path:
    """One JSONL file, one event a line: what `read_journal` reads back."""
    encoder = msgspec.json.Encoder()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for e in events:
            f.write(encoder.encode(e) + b"\n")
    return path
