"""Liveness checkers: after every fault the mesh reaches the state the fault implies.

* `check_recovery` (all): after every fault the mesh reaches the desired state the fault
  implies (copies per side) within `bound` seconds and keeps it until the next fault, unless
  a newer fault came first. The time it took is returned too, for the report.
* `check_sides` (split-brain-allowed): every side of a fault that should run the workload
  (see `world.World.expect`) runs it without a gap from `side_bound` after the fault until
  the next fault.

Fault events are the simulation's own history records (``incarnation == "sim"``); the
desired state travels with each as ``detail["expect"]``. The intervals are the ones
`checks.evaluate` chose (ground truth, or the journal's view).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from harmony.actors.journal import JournalEvent
from harmony.sim.findings import Recovery, Violation, fault_events
from harmony.sim.history import Interval, active_intervals
from harmony.sim.world import DOWN, Expectation, decode_expectations


def copies_at(intervals: Sequence[Interval], t: float, horizon: float) -> dict[str, int]:
    """Active copies per site at time t."""
    out: dict[str, int] = {}
    for i in intervals:
        end = i.end if i.end is not None else horizon
        if i.start <= t < end:
            out[i.site] = out.get(i.site, 0) + 1
    return out


def matches(expect: Expectation, copies: dict[str, int]) -> bool:
    """Whether copies per site satisfy copies per side (sites in no side must run none)."""
    placed = set()
    for side, want in expect.items():
        members = set() if side == DOWN else set(side.split(","))
        placed |= members
        got = sum(n for s, n in copies.items() if s in members)
        if side != DOWN and got != want:
            return False
    return all(n == 0 for s, n in copies.items() if s not in placed)


def _change_points(intervals: Sequence[Interval], lo: float, hi: float) -> list[float]:
    points = {lo}
    for i in intervals:
        for t in (i.start, i.end):
            if t is not None and lo <= t <= hi:
                points.add(t)
    return sorted(points)


def settled_at(
    intervals: Sequence[Interval], expect: Expectation, lo: float, hi: float, horizon: float
) -> float | None:
    """When the desired state was reached *for good* in [lo, hi): the start of the last
    stretch of desired states that lasts until `hi`. None if the state at `hi` is wrong.

    A state reached and then lost again (a copy fenced for no reason after a heal) does not
    count as recovered: the recovery time then includes the outage.
    """
    reached = None
    for t in _change_points(intervals, lo, hi):
        if t >= hi:
            break
        if matches(expect, copies_at(intervals, t, horizon)):
            reached = t if reached is None else reached
        else:
            reached = None
    return reached


Intervals = Mapping[str, Sequence[Interval]]
"""workload -> the intervals the checks count (ground truth, or the journal's view)"""


def _of(events: Sequence[JournalEvent], w: str, intervals: Intervals | None) -> list[Interval]:
    if intervals is not None and w in intervals:
        return list(intervals[w])
    return active_intervals(list(events), w)


def check_recovery(
    events: Sequence[JournalEvent],
    workloads: Sequence[str],
    horizon: float,
    bound: float,
    intervals: Intervals | None = None,
) -> tuple[list[Violation], list[Recovery]]:
    faults = fault_events(events)
    out: list[Violation] = []
    recoveries: list[Recovery] = []
    for w in workloads:
        active = _of(events, w, intervals)
        for f, nxt in itertools.zip_longest(faults, faults[1:]):
            expect = decode_expectations(f.detail["expect"]).get(w)
            if expect is None:
                continue
            until = nxt.mono if nxt is not None else horizon
            reached = settled_at(active, expect, f.mono, until, horizon)
            took = None if reached is None else reached - f.mono
            recoveries.append(Recovery(f, w, took))
            limit = float(f.detail.get("bound", bound))
            if took is not None and took <= limit:
                continue
            if took is None and until - f.mono <= limit and nxt is not None:
                continue  # a newer fault came first: it carries the obligation on
            what = f"{f.kind} {f.reason}".strip()
            if took is not None:
                detail = f"reached after {took:.1f} s"
            else:
                detail = f"not reached in {until - f.mono:.1f} s"
            out.append(
                Violation(
                    "recovery",
                    w,
                    f.mono,
                    f"after {what}: desired state {expect} {detail} (bound {limit:g} s)",
                )
            )
    return out, recoveries


def check_sides(
    events: Sequence[JournalEvent],
    workload: str,
    horizon: float,
    side_bound: float,
    intervals: Intervals | None = None,
) -> list[Violation]:
    """split-brain-allowed: each side that should run the workload runs it, without gaps."""
    active = _of(events, workload, intervals)
    faults = fault_events(events)
    out = []
    for f, nxt in itertools.zip_longest(faults, faults[1:]):
        expect = decode_expectations(f.detail["expect"]).get(workload)
        if not expect:
            continue
        lo, hi = f.mono + side_bound, (nxt.mono if nxt is not None else horizon)
        if hi <= lo:
            continue
        for side, want in expect.items():
            if side == DOWN or want < 1:
                continue
            members = set(side.split(","))
            gap = _first_gap([i for i in active if i.site in members], lo, hi, horizon)
            if gap is not None:
                out.append(
                    Violation(
                        "split-brain-allowed",
                        workload,
                        gap,
                        f"side {{{side}}} ran no copy at {gap - f.mono:.1f} s after "
                        f"{f.kind} {f.reason}".rstrip(),
                        tuple(sorted(members)),
                    )
                )
    return out


def _first_gap(intervals: Sequence[Interval], lo: float, hi: float, horizon: float) -> float | None:
    """The first instant in [lo, hi) that no interval covers, or None."""
    t = lo
    for i in sorted(intervals, key=lambda i: i.start):
        end = i.end if i.end is not None else horizon
        if i.start > t:
            break
        t = max(t, end)
        if t >= hi:
            return None
    return t if t < hi else None
