"""Checkers: read a merged history and report every violation, with when and where.

* `check_absolute` (absolute-consistency): active intervals of a workload never overlap
  across sites, and fencing tokens strictly grow from one holder to the next. A copy whose
  end is unknown (its site was frozen, or the history ends) counts as active.
* `check_sides` (split-brain-allowed): every side of a fault that should run the workload
  (see `world.World.expect`) runs it without a gap from `side_bound` after the fault until
  the next fault.
* `check_recovery` (all): after every fault the mesh reaches the desired state the fault
  implies (copies per side) within `bound` seconds and keeps it until the next fault, unless
  a newer fault came first. The time it took is returned too, for the report.

Fault events are the simulation's own history records (``incarnation == "sim"``); the
desired state travels with each as ``detail["expect"]``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harmony.actors.journal import JournalEvent
from harmony.sim.history import Interval, active_intervals, overlapping, token_regressions
from harmony.sim.scenario import Scenario
from harmony.sim.world import DOWN, Expectation, decode_expectations

SIM = "sim"


@dataclass(frozen=True)
class Violation:
    checker: str
    workload: str
    at: float
    message: str
    sites: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recovery:
    """How long the mesh took to reach the desired state after one fault."""

    fault: JournalEvent
    workload: str
    took: float | None
    """None: a newer fault came first (or the history ended) before it was reached."""


def fault_events(events: Sequence[JournalEvent]) -> list[JournalEvent]:
    return [e for e in events if e.incarnation == SIM and "expect" in e.detail]


def check_absolute(
    events: Sequence[JournalEvent], workload: str, horizon: float
) -> list[Violation]:
    intervals = active_intervals(list(events), workload)
    out = []
    for a, b in overlapping(intervals, horizon):
        end = min(x.end if x.end is not None else horizon for x in (a, b))
        out.append(
            Violation(
                "absolute-consistency",
                workload,
                max(a.start, b.start),
                f"active on {a.site} and {b.site} at the same time for "
                f"{end - max(a.start, b.start):.2f} s (tokens {a.token} and {b.token}"
                f"{', one end unknown' if None in (a.end, b.end) else ''})",
                (a.site, b.site),
            )
        )
    for a, b in token_regressions(intervals):
        out.append(
            Violation(
                "fencing-token",
                workload,
                b.start,
                f"token went from {a.token} on {a.site} to {b.token} on {b.site}",
                (a.site, b.site),
            )
        )
    return out


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


def check_recovery(
    events: Sequence[JournalEvent], workloads: Sequence[str], horizon: float, bound: float
) -> tuple[list[Violation], list[Recovery]]:
    faults = fault_events(events)
    out: list[Violation] = []
    recoveries: list[Recovery] = []
    for w in workloads:
        intervals = active_intervals(list(events), w)
        for f, nxt in itertools.zip_longest(faults, faults[1:]):
            expect = decode_expectations(f.detail["expect"]).get(w)
            if expect is None:
                continue
            until = nxt.mono if nxt is not None else horizon
            reached = settled_at(intervals, expect, f.mono, until, horizon)
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
    events: Sequence[JournalEvent], workload: str, horizon: float, side_bound: float
) -> list[Violation]:
    """split-brain-allowed: each side that should run the workload runs it, without gaps."""
    intervals = active_intervals(list(events), workload)
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
            gap = _first_gap([i for i in intervals if i.site in members], lo, hi, horizon)
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


def split_expected(
    violations: Sequence[Violation], expected: Sequence[str]
) -> tuple[list[Violation], list[Violation]]:
    """(unexpected, expected) violations; an expected checker that reported nothing is
    itself a violation: the known limitation is gone, and the scenario must say so."""
    known = [v for v in violations if v.checker in expected]
    other = [v for v in violations if v.checker not in expected]
    seen = {v.checker for v in known}
    for checker in expected:
        if checker not in seen:
            other.append(
                Violation("expected", "", 0.0, f"expected a {checker} violation, none found")
            )
    return other, known


def check_all(
    events: Sequence[JournalEvent],
    strategies: Mapping[str, str],
    horizon: float,
    recovery_bound: float,
    side_bound: float,
) -> tuple[list[Violation], list[Recovery]]:
    """Every checker that applies to each workload (name -> strategy)."""
    violations: list[Violation] = []
    for w, strategy in strategies.items():
        if strategy == "absolute-consistency":
            violations += check_absolute(events, w, horizon)
        else:
            violations += check_sides(events, w, horizon, side_bound)
    rec_violations, recoveries = check_recovery(events, list(strategies), horizon, recovery_bound)
    violations += rec_violations
    violations += [
        Violation("wait-until", e.workload, e.mono, e.reason)
        for e in events
        if e.incarnation == SIM and e.kind == "wait-failed"
    ]
    return sorted(violations, key=lambda v: v.at), recoveries


def evaluate(
    events: Sequence[JournalEvent], scenario: Scenario, horizon: float
) -> tuple[list[Violation], list[Violation], list[Recovery]]:
    """All checks a scenario asks for: (violations, expected violations, recoveries)."""
    c = scenario.checks
    strategies = {w.name: w.strategy for w in scenario.workloads}
    found, recoveries = check_all(events, strategies, horizon, c.recovery_bound, c.side_bound)
    violations, expected = split_expected(found, c.expect_violations)
    return violations, expected, recoveries
