"""The state-machine tables: every rule that decides who runs, in one file.

A step of a strategy (1) folds the event into the facts it keeps, (2) reduces those facts to a
few booleans, then (3) reads the tables below, top to bottom, first match wins:

* `AC_GOALS` / `SBA_GOALS`: what this site's copy should be (a `Goal`) and why;
* `WORKLOAD_ACTIONS`: (goal, driver phase, copy active?) -> the one driver command to send;
* `LEASE_RULES`: which lease request to send (AbsoluteConsistency);
* `DRIVER_REPORTS`: how a driver report moves the phase (reports are facts; ``unknown``
  is the one report that means "may still run");
* `FENCE_RETRY`: how long a fence of a copy in an unknown state waits before it is retried;
* `RECONCILE_KEYS`: which copy survives a split brain (smallest key wins); one row per
  policy of `names.ReconcilePolicy`.

Being level-triggered (facts in, commands out) keeps it idempotent: a repeated `Tick` or a
duplicated event never sends a command twice, because the optimistic phase already moved.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, TypeVar

from harmony.strategies.events import Copy
from harmony.strategies.names import ReconcilePolicy


class Phase(StrEnum):
    """What the driver is doing with this site's copy (moved optimistically on each command)."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    FENCING = "fencing"
    UNKNOWN = "unknown"  # the copy may run: a failed probe, stop or fence, a crashed driver


class Goal(StrEnum):
    ACTIVE = "active"  # the one active copy, with the lease token (AbsoluteConsistency)
    PASSIVE = "passive"  # a warm standby copy that must not act (AbsoluteConsistency, warm)
    RUN = "run"  # a copy without token (SplitBrainAllowed)
    STOPPED = "stopped"  # no copy; a graceful stop is enough
    FENCED = "fenced"  # no active copy, now: the lease is not (validly) ours


class Act(StrEnum):
    START_ACTIVE = "start-active"
    START_PASSIVE = "start-passive"
    START = "start"
    PROMOTE = "promote"
    STOP = "stop"
    FENCE = "fence"


class LeaseAct(StrEnum):
    ACQUIRE = "acquire"
    RENEW = "renew"
    RELEASE = "release"


class PeerStatus(StrEnum):
    UNKNOWN = "unknown"  # never heard of: counted as alive (defer to it), never as silent
    ALIVE = "alive"
    SUSPECT = "suspect"  # counted as alive: never act on suspicion
    SILENT = "silent"


# -- (goal, phase, active) -> action. Every combination not listed: wait for the driver. ------
WORKLOAD_ACTIONS: Final[Mapping[tuple[Goal, Phase, bool], Act]] = {
    # goal            phase            active   action
    (Goal.ACTIVE, Phase.STOPPED, False): Act.START_ACTIVE,
    (Goal.ACTIVE, Phase.RUNNING, False): Act.PROMOTE,  # warm copy takes over
    (Goal.PASSIVE, Phase.STOPPED, False): Act.START_PASSIVE,
    (Goal.RUN, Phase.STOPPED, False): Act.START,
    (Goal.STOPPED, Phase.STARTING, False): Act.STOP,
    (Goal.STOPPED, Phase.STARTING, True): Act.STOP,
    (Goal.STOPPED, Phase.RUNNING, False): Act.STOP,
    (Goal.STOPPED, Phase.RUNNING, True): Act.STOP,
    (Goal.FENCED, Phase.STARTING, True): Act.FENCE,
    (Goal.FENCED, Phase.RUNNING, True): Act.FENCE,
    (Goal.FENCED, Phase.STOPPING, True): Act.FENCE,  # a slow graceful stop is escalated
    (Goal.FENCED, Phase.UNKNOWN, True): Act.FENCE,  # retried with FENCE_RETRY backoff
    (Goal.FENCED, Phase.UNKNOWN, False): Act.FENCE,
}

# -- retries of a fence whose outcome was unknown: attempt n waits min(MAX, BASE * 2**(n-1)) --
FENCE_RETRY: Final[Mapping[str, float]] = {"base": 0.5, "max": 8.0}

# -- (phase, driver report) -> phase. A report not listed for a phase is stale: ignored. ------
# "stopped", "fenced" and "exited" are facts (nothing of the copy is left); "unknown" means the
# copy may still run, from whatever phase, so it is never taken for a stop. A stop or fence in
# progress always reports its own outcome, so "restarting" during one is stale.
DRIVER_REPORTS: Final[Mapping[tuple[Phase, str], Phase]] = {
    (Phase.STARTING, "started"): Phase.RUNNING,
    (Phase.STARTING, "restarting"): Phase.STARTING,
    (Phase.STARTING, "exited"): Phase.STOPPED,
    (Phase.STARTING, "stopped"): Phase.STOPPED,
    (Phase.STARTING, "fenced"): Phase.STOPPED,
    (Phase.STARTING, "unknown"): Phase.UNKNOWN,
    (Phase.RUNNING, "restarting"): Phase.STARTING,
    (Phase.RUNNING, "exited"): Phase.STOPPED,
    (Phase.RUNNING, "stopped"): Phase.STOPPED,
    (Phase.RUNNING, "fenced"): Phase.STOPPED,
    (Phase.RUNNING, "unknown"): Phase.UNKNOWN,
    (Phase.STOPPING, "stopped"): Phase.STOPPED,
    (Phase.STOPPING, "fenced"): Phase.STOPPED,
    (Phase.STOPPING, "exited"): Phase.STOPPED,
    (Phase.STOPPING, "unknown"): Phase.UNKNOWN,
    (Phase.FENCING, "fenced"): Phase.STOPPED,
    (Phase.FENCING, "stopped"): Phase.STOPPED,
    (Phase.FENCING, "exited"): Phase.STOPPED,
    (Phase.FENCING, "unknown"): Phase.UNKNOWN,
    (Phase.UNKNOWN, "started"): Phase.RUNNING,  # a probe recovered: the goals decide again
    (Phase.UNKNOWN, "stopped"): Phase.STOPPED,
    (Phase.UNKNOWN, "fenced"): Phase.STOPPED,
    (Phase.UNKNOWN, "exited"): Phase.STOPPED,
    (Phase.UNKNOWN, "unknown"): Phase.UNKNOWN,
    (Phase.STOPPED, "unknown"): Phase.UNKNOWN,  # e.g. the run actor died while stopped
}


# -- AbsoluteConsistency ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AcFacts:
    active: bool  # this site's copy is (or may be becoming) the active one
    unknown: bool  # the copy's state is unknown: it may run, whatever else we believe
    valid: bool  # we hold the lease and now < t0 + fence offset
    leaving: bool  # shutting down or handing the lease over
    warm: bool  # the topology keeps passive copies
    cooling: bool  # our copy failed recently


AC_GOALS: Final[tuple[tuple[Callable[[AcFacts], bool], Goal, str], ...]] = (
    # when                                          goal          why
    (lambda f: f.unknown, Goal.FENCED, "the copy's state is unknown: fence until confirmed"),
    (lambda f: f.active and not f.valid, Goal.FENCED, "active copy without a valid lease"),
    (lambda f: f.valid and f.leaving, Goal.STOPPED, "stopping before the lease is released"),
    (lambda f: f.valid, Goal.ACTIVE, "this site holds the lease"),
    (lambda f: f.warm and not (f.leaving or f.cooling), Goal.PASSIVE, "warm standby"),
    (lambda f: True, Goal.STOPPED, "this site does not hold the lease"),
)


@dataclass(frozen=True, slots=True)
class LeaseFacts:
    pending: bool  # a lease request is awaiting its answer
    holding: bool  # our last CAS succeeded and nothing since says it was lost
    leaving: bool
    stopped: bool  # a driver confirmed there is no copy (never a guess)
    due: bool  # a renewal is due
    retry_ok: bool  # no failed acquire/release is waiting out its retry delay
    may_acquire: bool  # lease seen gone, we are eligible, our rank delay has passed, and no
    # copy of ours is in an unknown state (what an earlier incarnation left is fenced first)


LEASE_RULES: Final[tuple[tuple[Callable[[LeaseFacts], bool], LeaseAct | None, str], ...]] = (
    # when                                                  request          why
    (lambda f: f.pending, None, "waiting for the answer to the last lease request"),
    (
        lambda f: f.holding and f.leaving and f.stopped and f.retry_ok,
        LeaseAct.RELEASE,
        "copy stopped: handing the lease over without waiting for its TTL",
    ),
    (lambda f: f.holding and f.due, LeaseAct.RENEW, "renew interval elapsed"),
    (
        lambda f: not f.holding and f.may_acquire and f.retry_ok,
        LeaseAct.ACQUIRE,
        "lease gone and this site is the best live candidate",
    ),
    (lambda f: True, None, "no lease request due"),
)


# -- SplitBrainAllowed -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SbaFacts:
    unknown: bool  # the copy's state is unknown: fence it until a driver confirms it down
    shutting: bool
    running: bool  # our copy is starting or running
    lost: bool  # reconcile chose another copy over ours
    designated: bool  # every site before us in the topology is silent
    other_copy: bool  # a live peer runs a copy
    synced: bool  # we have seen the copies of the mesh at least once (or waited long enough)
    cooling: bool
    moved_here: bool = False  # an operator moved the workload to this site
    barred: bool = False  # the geo constraints bar this site (or sites disagree on them)


SBA_GOALS: Final[tuple[tuple[Callable[[SbaFacts], bool], Goal, str], ...]] = (
    # when                                  goal           why
    (lambda f: f.unknown, Goal.FENCED, "the copy's state is unknown: fence until confirmed"),
    (lambda f: f.barred, Goal.STOPPED, "this site may not run the workload"),
    (lambda f: f.shutting, Goal.STOPPED, "shutdown requested"),
    (lambda f: f.running and f.lost, Goal.STOPPED, "reconcile chose another copy"),
    (lambda f: f.running, Goal.RUN, "keep the running copy"),
    (lambda f: f.moved_here and not f.cooling, Goal.RUN, "an operator moved the workload here"),
    (lambda f: not f.designated, Goal.STOPPED, "a site before this one in the topology is live"),
    (lambda f: f.other_copy, Goal.STOPPED, "a copy already runs on a live site"),
    (lambda f: not f.synced, Goal.STOPPED, "waiting for a first view of the running copies"),
    (lambda f: f.cooling, Goal.STOPPED, "cooling down after the copy failed"),
    (lambda f: True, Goal.RUN, "every site before this one is silent: run a copy here"),
)

# -- reconcile: (copy, topology rank) -> sort key; the smallest key survives. -----------------
RECONCILE_KEYS: Final[Mapping[ReconcilePolicy, Callable[[Copy, int], tuple[float, int]]]] = {
    "keep-original": lambda c, rank: (c.started_at, rank),  # first started survives
    "keep-replacement": lambda c, rank: (-c.started_at, rank),  # last started survives
    "best-score": lambda c, rank: (-c.score, rank),  # highest score survives
}

F = TypeVar("F")
R = TypeVar("R")


def first_match(rules: tuple[tuple[Callable[[F], bool], R, str], ...], facts: F) -> tuple[R, str]:
    """The (result, why) of the first rule whose condition holds; tables end with a catch-all."""
    for when, result, why in rules:
        if when(facts):
            return result, why
    raise LookupError("rule table has no catch-all row")
