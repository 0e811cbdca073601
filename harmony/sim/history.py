"""Histories: every site's journal merged on the machine-wide monotonic clock, and what the
journal says about when each workload's copies ran.

The journal is what the agents *believed*; the safety checks count what ran (`truth`: the
copies' own records and the process table). The journal's view is kept to explain a
violation ("the journal says b's copy stopped at 12.3, its records show ticks until 48.0")
and as the fallback for histories recorded without ground truth, where the result says so.

In the journal's view a copy is active from the moment its site *decided* to start it (the
`start` event, written before the process is spawned) until the driver reported it gone
(stopped, fenced, exited for good). A copy whose end is unknown (its site was killed, its
driver state unknown) stays active until the site's agent is seen again (`agent-start`) or,
failing that, until the end of the history.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from harmony.actors.journal import JournalEvent, read_journal

ENDS = {"driver-stopped", "driver-fenced", "tether-fenced"}
"""Journal kinds that end a copy. Not `driver-failed` (old histories) nor `driver-unknown`:
a failed stop or probe says nothing about whether the copy still runs."""
SITE_DOWN = {"agent-start", "site-killed"}


@dataclass(frozen=True)
class Interval:
    site: str
    workload: str
    start: float
    end: float | None
    token: int | None
    ended_by: str = ""
    began_by: str = ""
    acts: int | None = None
    """Acts (tick, write) the copy's records show inside; None: some process of it does
    not record (or the interval comes from the journal), so nobody can say it did not act."""
    resumed: str = ""
    """Why this interval continues an earlier one of the same processes: "site" (a freeze
    of the whole site ended), "frozen" (scans saw it frozen); "" for a genuine start."""
    procs: tuple[str, ...] = ()
    """The processes behind it (ground truth), for the evidence of a violation."""

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
            # incarnation: the journal cannot say when its copies ended (its keepers fence
            # them, a new incarnation fences leftovers); this fallback takes that moment.
            close(e.site, e.mono, e.kind)
            continue
        if e.workload != workload:
            continue
        if e.kind in ("start", "promote") and e.site not in open_:
            open_[e.site] = (e.mono, e.token)
        elif e.kind in ENDS or (e.kind == "driver-exited" and not restarting(e)):
            close(e.site, e.mono, e.kind)
    for site, (start, token) in open_.items():
        out.append(Interval(site, workload, start, None, token, "unknown"))
    return sorted(out, key=lambda i: i.start)


def restarting(e: JournalEvent) -> bool:
    """A driver-exited record whose copy the driver brings back (journals before the typed
    detail said so in the reason only)."""
    return e.detail.get("restarting") == "true" or "restarting in" in e.reason


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
    with the same token (a restart under the same lease). A copy resuming after a freeze is
    not a new start (its token was judged when it began).
    """
    with_token = [i for i in intervals if i.token is not None and not i.resumed]
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


def at(t: float | None, origin: float) -> str:
    """A time of the history as the report shows it: seconds since its start."""
    return "the end" if t is None else f"+{t - origin:.1f} s"


def journal_says(
    events: list[JournalEvent], truth: Interval, lo: float, hi: float, origin: float
) -> str:
    """What the journal said about the copy `truth` (ground truth) while it was active in
    [lo, hi]: the explanation next to a violation."""
    said = [
        j for j in active_intervals(events, truth.workload) if j.site == truth.site and j.start < hi
    ]
    who = f"{truth.site}'s copy"
    really = f"ground truth: active until {at(truth.end, origin)} ({truth.ended_by})"
    if any(j.end is None or j.end > lo for j in said):
        return f"journal agrees {who} ran then; {really}"
    if not said:
        return f"journal shows no copy on {truth.site} then; {really}"
    last = said[-1]
    return (
        f"journal says {who} (token {last.token}) stopped at {at(last.end, origin)} "
        f"({last.ended_by}); {really}"
    )
