"""``cost``: run on the cheapest eligible live site, and move only when it is worth it.

`decide` is pure: from the spec, the state it returned last time, the sites (with their
prices, as published in the mesh's KV, so every agent decides from the same numbers) and
`now`, `COST_RULES` (first match wins) says what to do, and why:

* no eligible, priced, live site: the workload stays down;
* not placed yet, or its site lost or no longer eligible: go to the cheapest at once (a
  failover, not a cost move: no hold, no cooldown);
* otherwise move only when one *candidate* has been cheaper by more than `min_saving`
  for `hold` seconds without a break, and the last move is `cooldown` seconds old. The
  candidate is kept while it still saves enough, even if another site dips lower for a
  moment, so noise cannot reset the hold over and over.

Why noise never makes it flap: a move from A to B needs ``price(A) - price(B) > min_saving``.
If every price is its true value give or take `noise` and ``2 * noise < min_saving``, each
move lowers the true price of the site the workload runs on, so there are at most
``sites - 1`` moves, however long the noise goes on (`tests/strategies/test_cost.py`).

A move is a graceful sequence the caller carries out, `MOVE_STEPS`, one row per strategy:
absolute-consistency stops the old copy, releases the lease, and the target acquires it;
split-brain-allowed starts the new copy first and stops the old one once it runs. Both are
what the strategies already do on ``MoveRequested(target)``, so the wiring feeds that event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from harmony.strategies.labels import Constraint, SiteFacts, eligible
from harmony.strategies.names import StrategyName
from harmony.strategies.tables import first_match


class CostAct(StrEnum):
    DOWN = "down"  # nowhere to run
    PLACE = "place"  # not placed yet: the cheapest site
    FAILOVER = "failover"  # its site was lost or left the constraints: the cheapest site now
    STAY = "stay"
    WAIT = "wait"  # a cheaper site is holding its saving, or the cooldown runs
    MOVE = "move"  # graceful move to the candidate


@dataclass(frozen=True, slots=True)
class CostFacts:
    any_site: bool  # an eligible, priced, live site exists
    placed: bool
    site_ok: bool  # the current site is alive, eligible and priced
    saving: bool  # a candidate is cheaper by more than min_saving
    held: bool  # ... and has been for `hold` seconds
    cooling: bool  # the last move was less than `cooldown` ago


COST_RULES: Final[tuple[tuple[Callable[[CostFacts], bool], CostAct, str], ...]] = (
    # when                      act                why
    (lambda f: not f.any_site, CostAct.DOWN, "no eligible priced site is alive: stay down"),
    (lambda f: not f.placed, CostAct.PLACE, "not placed yet: the cheapest eligible live site"),
    (lambda f: not f.site_ok, CostAct.FAILOVER, "its site is lost or no longer eligible"),
    (lambda f: not f.saving, CostAct.STAY, "no site saves more than min_saving"),
    (lambda f: not f.held, CostAct.WAIT, "a cheaper site must keep its saving for `hold`"),
    (lambda f: f.cooling, CostAct.WAIT, "moved less than `cooldown` ago"),
    (lambda f: True, CostAct.MOVE, "saving held long enough: move gracefully"),
)


class Step(StrEnum):
    STOP_OLD = "stop-old"
    RELEASE = "release"
    ACQUIRE = "acquire"
    START_NEW = "start-new"
    AWAIT_RUNNING = "await-running"


# -- strategy -> the steps of a graceful move, in order: (step, on which site, why) ----------
MOVE_STEPS: Final[Mapping[StrategyName, tuple[tuple[Step, str, str], ...]]] = {
    "absolute-consistency": (
        (Step.STOP_OLD, "source", "stop the old copy (its lease is still renewed meanwhile)"),
        (Step.RELEASE, "source", "release the lease once the copy is confirmed stopped"),
        (Step.ACQUIRE, "target", "the target, first in the topology, takes the lease and starts"),
    ),
    "split-brain-allowed": (
        (Step.START_NEW, "target", "start the new copy first: no gap in service"),
        (Step.AWAIT_RUNNING, "target", "wait until the new copy runs"),
        (Step.STOP_OLD, "source", "stop the old copy: the moved copy wins the reconcile"),
    ),
}


@dataclass(frozen=True, slots=True)
class MoveStep:
    step: Step
    site: str
    reason: str


@dataclass(frozen=True, slots=True)
class CostSpec:
    min_saving: float
    hold: float
    cooldown: float
    constraints: tuple[Constraint, ...] = ()

    def __post_init__(self) -> None:
        if self.min_saving < 0 or self.hold < 0 or self.cooldown < 0:
            raise ValueError("min_saving, hold and cooldown must be >= 0")


@dataclass(frozen=True, slots=True)
class CostState:
    site: str | None = None  # where the workload is placed
    candidate: str | None = None  # the cheaper site whose saving is being held
    saving_since: float = 0.0
    last_move_at: float | None = None  # the last cost move (failovers do not count)


@dataclass(frozen=True, slots=True)
class CostDecision:
    state: CostState
    act: CostAct
    target: str | None  # where the workload goes (PLACE, FAILOVER, MOVE)
    steps: tuple[MoveStep, ...]  # MOVE only
    reason: str
    excluded: Mapping[str, str]  # site -> why it is not considered
    wake_at: float | None


def priced(
    spec: CostSpec, sites: Iterable[SiteFacts]
) -> tuple[dict[str, float], Mapping[str, str]]:
    """Prices of the eligible live sites that advertise one; why each other site is out."""
    kept, excluded = eligible(sites, spec.constraints)
    why = dict(excluded)
    prices: dict[str, float] = {}
    for s in kept:
        if not s.alive:
            why[s.name] = f"site {s.name} is not alive"
        elif s.price is None:
            why[s.name] = f"site {s.name} advertises no price"
        else:
            prices[s.name] = s.price
    return prices, why


def move_steps(strategy: StrategyName, source: str, target: str) -> tuple[MoveStep, ...]:
    where = {"source": source, "target": target}
    return tuple(MoveStep(step, where[on], why) for step, on, why in MOVE_STEPS[strategy])


def decide(
    spec: CostSpec,
    state: CostState,
    sites: Iterable[SiteFacts],
    now: float,
    strategy: StrategyName = "absolute-consistency",
) -> CostDecision:
    """Where the workload should run now, by price; see the module docstring."""
    prices, excluded = priced(spec, sites)
    cheapest = min(prices, key=lambda n: (prices[n], n), default=None)
    here = prices.get(state.site) if state.site is not None else None

    def saves(site: str | None) -> bool:
        return site in prices and here is not None and here - prices[site] > spec.min_saving

    candidate = state.candidate if saves(state.candidate) else None
    since = state.saving_since
    if candidate is None and saves(cheapest):
        candidate, since = cheapest, now
    state = CostState(state.site, candidate, since if candidate else 0.0, state.last_move_at)
    cool_until = None if state.last_move_at is None else state.last_move_at + spec.cooldown
    facts = CostFacts(
        any_site=bool(prices),
        placed=state.site is not None,
        site_ok=here is not None,
        saving=candidate is not None,
        held=candidate is not None and now >= since + spec.hold,
        cooling=cool_until is not None and now < cool_until,
    )
    act, why = first_match(COST_RULES, facts)
    match act:
        case CostAct.DOWN:
            gone = "; ".join(excluded.values())
            return CostDecision(CostState(), act, None, (), f"{why} ({gone})", excluded, None)
        case CostAct.PLACE | CostAct.FAILOVER:
            assert cheapest is not None
            why = f"{why}: {cheapest} at {prices[cheapest]:g}"
            new = CostState(cheapest, last_move_at=state.last_move_at)
            return CostDecision(new, act, cheapest, (), why, excluded, None)
        case CostAct.STAY:
            return CostDecision(state, act, None, (), why, excluded, None)
        case CostAct.WAIT:
            assert candidate is not None and here is not None
            at = since + spec.hold if not facts.held else cool_until
            why = f"{why}: {candidate} saves {here - prices[candidate]:g}; decide again at {at:g}"
            return CostDecision(state, act, None, (), why, excluded, at)
    assert candidate is not None and state.site is not None and here is not None
    why = (
        f"{why}: {candidate} at {prices[candidate]:g} saves {here - prices[candidate]:g} "
        f"> {spec.min_saving:g} since {since:g}"
    )
    steps = move_steps(strategy, state.site, candidate)
    return CostDecision(
        CostState(candidate, last_move_at=now), act, candidate, steps, why, excluded, None
    )
