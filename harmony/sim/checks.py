"""Checkers: read a run's ground truth and report every violation, with when and where.

The intervals the checkers reason about are the copies' *activity* (`truth`: their own
records and the process table); the journal only explains a violation. A history without
ground truth (an old one) falls back to the journal's view, and the evaluation says so.

* `check_absolute` (absolute-consistency): no two copies of a workload are active at the
  same time (on two sites, or on one site under two tokens), and fencing tokens strictly
  grow from one holder to the next. A copy whose end is unknown counts as active. One
  bounded exception, the documented residual risk, is reported as a *residual* note: a copy
  whose whole site was frozen past its deadline and that, resumed, did not act before it
  self-fenced or was killed, overlapping for at most `Checks.resume_bound` seconds.
* `check_stale_writes`: in the shared ledger's commit order, no row carries a token lower
  than an earlier row's (the fencing-token guard let a stale copy write).
* the checkers of `liveness`: recovery after every fault, split-brain-allowed sides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harmony.actors.journal import JournalEvent
from harmony.sim.findings import SIM as SIM
from harmony.sim.findings import Recovery as Recovery
from harmony.sim.findings import Violation as Violation
from harmony.sim.findings import fault_events as fault_events
from harmony.sim.history import Interval, active_intervals, at, journal_says, token_regressions
from harmony.sim.horizontal import check_horizontal
from harmony.sim.liveness import Intervals, check_recovery, check_sides
from harmony.sim.scenario import Scenario
from harmony.sim.truth import LedgerRow, Truth
from harmony.sim.truthfiles import LedgerReader, TruthError, TruthFiles, load_truth
from harmony.strategies import uses_lease

RESUME_BOUND = 1.0
"""Default of `Checks.resume_bound`: how long a copy resumed after a whole-site freeze may
overlap before it fences itself (it checks its deadline before every act)."""
JOURNAL_ONLY = "journal only (no ground truth)"


def _end(i: Interval, horizon: float) -> float:
    return i.end if i.end is not None else horizon


def _conflict(a: Interval, b: Interval) -> bool:
    """Two copies: on two sites, or on one site under two known tokens (an orphan of an
    earlier copy next to a new one)."""
    if a.site != b.site:
        return True
    return a.token is not None and b.token is not None and a.token != b.token


def _evidence(i: Interval, origin: float) -> str:
    who = ", ".join(i.procs) or "journal"
    began = f" ({i.began_by})" if i.began_by else ""
    return f"{i.site}: {who} from {at(i.start, origin)}{began} to {i.ended_by or 'the end'}"


FROZE = {"site": "its whole site was frozen", "frozen": "it was frozen"}


def _residual(a: Interval, b: Interval, lo: float, hi: float, bound: float) -> Interval | None:
    """The copy of the pair that is the documented residual risk, if one is: the older copy
    (the lower token), resumed after it was frozen (its whole site, or scans saw the copy
    itself stopped: a frozen copy killed by its watcher is briefly seen running as it dies),
    that never acted again and ended within `bound`."""
    for x, other in ((a, b), (b, a)):
        older = x.token is None or other.token is None or x.token < other.token
        ended = x.end is not None and hi - lo <= bound
        if x.resumed in ("site", "frozen") and x.acts == 0 and ended and older:
            return x
    return None


def check_absolute(
    intervals: Sequence[Interval],
    workload: str,
    horizon: float,
    *,
    resume_bound: float = RESUME_BOUND,
    events: Sequence[JournalEvent] = (),
    origin: float = 0.0,
) -> tuple[list[Violation], list[Violation]]:
    """(violations, residual notes) of one absolute-consistency workload."""
    mine = sorted((i for i in intervals if i.workload == workload), key=lambda i: i.start)
    out: list[Violation] = []
    residuals: list[Violation] = []
    for n, a in enumerate(mine):
        for b in mine[n + 1 :]:
            lo, hi = max(a.start, b.start), min(_end(a, horizon), _end(b, horizon))
            if hi <= lo or not _conflict(a, b):
                continue
            tokens = f"tokens {a.token} and {b.token}"
            unknown = ", one end unknown" if None in (a.end, b.end) else ""
            late = _residual(a, b, lo, hi, resume_bound)
            if late is not None:
                other = b if late is a else a
                residuals.append(
                    Violation(
                        "residual",
                        workload,
                        lo,
                        f"{late.site}'s copy resumed after {FROZE[late.resumed]} "
                        f"({late.began_by}) and ended ({late.ended_by}) without acting, "
                        f"while {other.site} was active: {hi - lo:.3f} s ({tokens}; "
                        f"bound {resume_bound:g} s): the documented residual risk, covered "
                        "only by the fencing-token guard",
                        (a.site, b.site),
                    )
                )
                continue
            what = (
                f"active on {a.site} and {b.site} at the same time"
                if a.site != b.site
                else f"two copies active on {a.site} at the same time"
            )
            explain = ""
            if a.procs or b.procs:
                explain = " | ".join(journal_says(list(events), x, lo, hi, origin) for x in (a, b))
            out.append(
                Violation(
                    "absolute-consistency",
                    workload,
                    lo,
                    f"{what} for {hi - lo:.2f} s ({tokens}{unknown}; evidence: "
                    f"{_evidence(a, origin)}; {_evidence(b, origin)})",
                    (a.site, b.site),
                    explain,
                )
            )
    for a, b in token_regressions(mine):
        out.append(
            Violation(
                "fencing-token",
                workload,
                b.start,
                f"token went from {a.token} on {a.site} to {b.token} on {b.site}",
                (a.site, b.site),
            )
        )
    return out, residuals


def check_stale_writes(
    rows: Sequence[LedgerRow], owners: Mapping[tuple[str, int], str]
) -> list[Violation]:
    """In commit order, a row whose token is lower than an earlier row's (of the same
    workload, told by the pid that wrote it) is a stale write the guard let through; so is
    a row of another site under the same token (two holders of one token)."""
    out = []
    top: dict[str, LedgerRow] = {}
    for row in rows:
        w = owners.get((row.site, row.pid), "")
        best = top.get(w)
        if best is not None and (
            row.token < best.token or (row.token == best.token and row.site != best.site)
        ):
            out.append(
                Violation(
                    "stale-write",
                    w,
                    row.mono,
                    f"ledger row {row.id} committed by {row.site} (pid {row.pid}) with token "
                    f"{row.token} after row {best.id} by {best.site} with token {best.token}",
                    (best.site, row.site),
                )
            )
        if best is None or row.token > best.token:
            top[w] = row
    return out


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


def check_constraints(
    intervals: Sequence[Interval], workload: str, allowed: Sequence[str], origin: float = 0.0
) -> list[Violation]:
    """geo: every copy of `workload` that ran on a site outside its constraints (from the
    history: ground truth where there is some)."""
    return [
        Violation(
            "geo",
            workload,
            i.start,
            f"a copy ran on {i.site}, outside the workload's constraints (allowed: "
            f"{', '.join(allowed) or 'none'}) {_evidence(i, origin)}",
        )
        for i in intervals
        if i.site not in allowed
    ]


def check_all(
    events: Sequence[JournalEvent],
    strategies: Mapping[str, str],
    horizon: float,
    recovery_bound: float,
    side_bound: float,
    *,
    intervals: Intervals | None = None,
    resume_bound: float = RESUME_BOUND,
) -> tuple[list[Violation], list[Recovery], list[Violation]]:
    """Every checker that applies to each workload (name -> strategy):
    (violations, recoveries, residual notes)."""
    violations: list[Violation] = []
    residuals: list[Violation] = []
    origin = min((e.mono for e in events), default=0.0)
    for w, strategy in strategies.items():
        if uses_lease(strategy):
            found, notes = check_absolute(
                list(intervals[w])
                if intervals and w in intervals
                else active_intervals(list(events), w),
                w,
                horizon,
                resume_bound=resume_bound,
                events=events,
                origin=origin,
            )
            violations += found
            residuals += notes
        else:
            violations += check_sides(events, w, horizon, side_bound, intervals)
    rec_violations, recoveries = check_recovery(
        events, list(strategies), horizon, recovery_bound, intervals
    )
    violations += rec_violations
    violations += [
        Violation("wait-until", e.workload, e.mono, e.reason)
        for e in events
        if e.incarnation == SIM and e.kind == "wait-failed"
    ]
    return sorted(violations, key=lambda v: v.at), recoveries, residuals


@dataclass
class Evaluation:
    """What the checks found in one run, and what they rested on."""

    violations: list[Violation]
    expected: list[Violation]
    recoveries: list[Recovery]
    residuals: list[Violation]
    intervals: dict[str, list[Interval]]
    """workload -> the intervals the checks counted (for the report's timeline)"""
    sources: dict[str, str]
    """workload -> what those rest on: "records + scans", ..., or `JOURNAL_ONLY`"""


def evaluate(
    events: Sequence[JournalEvent],
    scenario: Scenario,
    horizon: float,
    truth: TruthFiles | None = None,
    *,
    require_truth: bool = False,
    ledger_reader: LedgerReader | None = None,
) -> Evaluation:
    """All checks a scenario asks for, on the run's ground truth (`truth`: its records,
    scans and ledger) where there is some, else on the journal, said per workload.

    `require_truth`: an absolute-consistency workload without ground truth, or ground
    truth that cannot be read, is a violation (the runner, which wires it, asks for this).
    """
    c = scenario.checks
    resume_bound = float(getattr(c, "resume_bound", RESUME_BOUND))
    strategies = {w.name: w.strategy for w in scenario.workloads}
    problems: list[Violation] = []
    gt: Truth | None = None
    if truth is not None:
        try:
            gt = load_truth(truth, events, horizon, ledger_reader)
        except TruthError as e:
            problems.append(Violation("ground-truth", "", horizon, str(e)))
    intervals: dict[str, list[Interval]] = {}
    sources: dict[str, str] = {}
    for w, strategy in strategies.items():
        if gt is not None and w in gt.intervals:
            intervals[w], sources[w] = gt.intervals[w], gt.sources[w]
            continue
        intervals[w], sources[w] = active_intervals(list(events), w), JOURNAL_ONLY
        if require_truth and uses_lease(strategy):
            problems.append(
                Violation(
                    "ground-truth",
                    w,
                    horizon,
                    f"no records and no process scans of {w}: its safety would rest on "
                    "the journal alone",
                )
            )
    found, recoveries, residuals = check_all(
        events,
        strategies,
        horizon,
        c.recovery_bound,
        c.side_bound,
        intervals=intervals,
        resume_bound=resume_bound,
    )
    if gt is not None and gt.ledger is not None:
        found += check_stale_writes(gt.ledger, gt.owners)
    origin = min((e.mono for e in events), default=0.0)
    for spec in scenario.workloads:
        if spec.constraints:
            allowed = spec.eligible_sites(scenario.labels)
            found += check_constraints(intervals[spec.name], spec.name, allowed, origin)
    found += check_horizontal(scenario, intervals, horizon)
    found = sorted([*found, *problems], key=lambda v: v.at)
    violations, expected = split_expected(found, c.expect_violations)
    return Evaluation(violations, expected, recoveries, residuals, intervals, sources)
