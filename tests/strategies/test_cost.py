"""cost: the cheapest eligible live site; moves only on a held saving, at most once per
cooldown, as a graceful sequence per strategy; noise within min_saving never flaps."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import event, given, settings
from hypothesis import strategies as st

from harmony.strategies import (
    Command,
    CostSpec,
    CostState,
    FailoverTopology,
    Params,
    SiteFacts,
    decide_cost,
    parse_constraints,
    strategy_for,
)
from harmony.strategies.commands import AcquireLease, ReleaseLease, StartCopy, StopCopy
from harmony.strategies.cost import COST_RULES, CostAct, CostFacts, Step, move_steps
from harmony.strategies.events import (
    Copy,
    LeaseAcquired,
    LeaseObservedGone,
    LeaseReleased,
    MoveRequested,
    PeerCopiesSeen,
    WorkloadFenced,
    WorkloadStarted,
    WorkloadStopped,
)
from harmony.strategies.tables import first_match

SPEC = CostSpec(min_saving=0.1, hold=30.0, cooldown=300.0)


def sites(prices: dict[str, float | None], dead: tuple[str, ...] = ()) -> list[SiteFacts]:
    return [
        SiteFacts(n, {"provider": n[0]}, price=p, alive=n not in dead) for n, p in prices.items()
    ]


def test_cost_rules_exhaustively() -> None:
    for bits in range(64):
        f = CostFacts(*(bool(bits >> i & 1) for i in range(6)))
        act, _ = first_match(COST_RULES, f)
        expected = (
            CostAct.DOWN
            if not f.any_site
            else CostAct.PLACE
            if not f.placed
            else CostAct.FAILOVER
            if not f.site_ok
            else CostAct.STAY
            if not f.saving
            else CostAct.WAIT
            if not f.held or f.cooling
            else CostAct.MOVE
        )
        assert act is expected, f


def test_places_on_the_cheapest_then_moves_only_after_hold_and_gracefully() -> None:
    d = decide_cost(SPEC, CostState(), sites({"a": 1.0, "b": 0.8, "c": None}), 0.0)
    assert (d.act, d.target) == (CostAct.PLACE, "b") and "no price" in d.excluded["c"]
    d = decide_cost(SPEC, d.state, sites({"a": 0.75, "b": 0.8}), 1.0)
    assert d.act is CostAct.STAY  # saves 0.05 < min_saving
    d = decide_cost(SPEC, d.state, sites({"a": 0.5, "b": 0.8}), 2.0)
    assert (d.act, d.wake_at) == (CostAct.WAIT, 32.0)
    d = decide_cost(SPEC, d.state, sites({"a": 0.5, "b": 0.8}), 31.9)
    assert d.act is CostAct.WAIT
    d = decide_cost(SPEC, d.state, sites({"a": 0.5, "b": 0.8}), 32.0, "absolute-consistency")
    assert (d.act, d.target, d.state.site) == (CostAct.MOVE, "a", "a")
    assert [(s.step, s.site) for s in d.steps] == [
        (Step.STOP_OLD, "b"),
        (Step.RELEASE, "b"),
        (Step.ACQUIRE, "a"),
    ]
    assert "saves 0.3 > 0.1" in d.reason


def test_split_brain_allowed_starts_the_new_copy_before_stopping_the_old() -> None:
    state = CostState("b", "a", 0.0)
    d = decide_cost(SPEC, state, sites({"a": 0.5, "b": 0.8}), 40.0, "split-brain-allowed")
    assert [(s.step, s.site) for s in d.steps] == [
        (Step.START_NEW, "a"),
        (Step.AWAIT_RUNNING, "a"),
        (Step.STOP_OLD, "b"),
    ]


def test_a_break_in_the_saving_restarts_the_hold_and_the_cooldown_limits_moves() -> None:
    d = decide_cost(SPEC, CostState("b"), sites({"a": 0.5, "b": 0.8}), 0.0)
    d = decide_cost(SPEC, d.state, sites({"a": 0.75, "b": 0.8}), 20.0)  # saving gone
    d = decide_cost(SPEC, d.state, sites({"a": 0.5, "b": 0.8}), 25.0)
    assert d.act is CostAct.WAIT and d.wake_at == 55.0
    d = decide_cost(SPEC, d.state, sites({"a": 0.5, "b": 0.8}), 55.0)
    assert d.act is CostAct.MOVE
    d = decide_cost(SPEC, d.state, sites({"a": 0.5, "b": 0.1}), 56.0)
    d = decide_cost(SPEC, d.state, sites({"a": 0.5, "b": 0.1}), 100.0)
    assert d.act is CostAct.WAIT and d.wake_at == 355.0 and "cooldown" in d.reason
    d = decide_cost(SPEC, d.state, sites({"a": 0.5, "b": 0.1}), 355.0)
    assert (d.act, d.target) == (CostAct.MOVE, "b")


def test_a_lost_site_fails_over_at_once_and_no_eligible_site_means_down() -> None:
    cs = parse_constraints(['provider != "x"'])
    spec = CostSpec(0.1, 30.0, 300.0, cs)
    d = decide_cost(spec, CostState("b", last_move_at=0.0), sites({"b": 1, "c": 2}, ("b",)), 1)
    assert (d.act, d.target) == (CostAct.FAILOVER, "c")  # no hold, no cooldown
    d = decide_cost(spec, d.state, sites({"x1": 0.1, "c": 2}, ("c",)), 2.0)
    assert d.act is CostAct.DOWN and d.target is None
    assert "stay down" in d.reason and 'provider != "x"' in d.reason


PRICES = st.floats(0.5, 5.0)


@settings(max_examples=300, deadline=None)
@given(
    base=st.lists(PRICES, min_size=1, max_size=6),
    noise=st.lists(st.floats(-1.0, 1.0), min_size=1, max_size=400),
    eps=st.floats(0.0, 0.049),
    dts=st.lists(st.floats(0.0, 40.0), min_size=1, max_size=400),
    start=st.integers(0, 5),
)
def test_price_noise_within_min_saving_never_flaps(
    base: list[float], noise: list[float], eps: float, dts: list[float], start: int
) -> None:
    """Prices are base +- eps with 2 * eps < min_saving: every move lowers the true price
    of the site the workload runs on, so at most sites - 1 moves, each a cooldown apart."""
    names = [f"s{i}" for i in range(len(base))]
    state, now, moves = CostState(names[start % len(names)]), 0.0, list[float]()
    for step in range(max(len(noise), len(dts))):
        prices = {}
        for i, n in enumerate(names):
            prices[n] = base[i] + eps * noise[(step + 7 * i) % len(noise)]
        d = decide_cost(SPEC, state, sites(prices), now)
        assert d.target is None or d.target in names
        if d.act is CostAct.MOVE:
            assert state.site is not None and d.target is not None
            assert base[names.index(d.target)] < base[names.index(state.site)]
            moves.append(now)
        state = d.state
        now += dts[step % len(dts)]
    event(f"{len(moves)} moves")
    assert len(moves) <= len(names) - 1
    assert all(b - a >= SPEC.cooldown for a, b in pairwise(moves))


@settings(max_examples=200, deadline=None)
@given(
    prices=st.lists(st.tuples(PRICES, st.booleans(), st.booleans()), min_size=1, max_size=6),
    steps=st.integers(1, 30),
)
def test_the_workload_never_goes_to_a_site_outside_the_constraints(
    prices: list[tuple[float, bool, bool]], steps: int
) -> None:
    cs = parse_constraints(['provider in ["e"]'])
    spec = CostSpec(0.1, 5.0, 10.0, cs)
    facts = [
        SiteFacts(f"{'e' if eu else 'u'}{i}", {"provider": "e" if eu else "u"}, price=p, alive=up)
        for i, (p, eu, up) in enumerate(prices)
    ]
    state = CostState()
    for t in range(steps):
        d = decide_cost(spec, state, facts, float(t * 7))
        assert d.target is None or d.target.startswith("e")
        assert d.state.site is None or d.state.site.startswith("e")
        state = d.state
        facts = [*facts[1:], facts[0]]  # liveness moves around
        facts = [SiteFacts(s.name, s.labels, price=s.price, alive=not s.alive) for s in facts]


# -- the steps are what the strategies already do on MoveRequested ------------------------
TOPO = FailoverTopology.of("a", "b", "c")


def steps_seen(commands: tuple[Command, ...], site: str, source: str, target: str) -> list:
    kinds = {StopCopy: Step.STOP_OLD, ReleaseLease: Step.RELEASE, AcquireLease: Step.ACQUIRE}
    out = []
    for c in commands:
        if isinstance(c, StartCopy) and site == target:
            out.append((Step.START_NEW, site))
        elif type(c) in kinds and (site == source) == (type(c) is not AcquireLease):
            out.append((kinds[type(c)], site))
    return out


def test_ac_move_steps_are_the_operator_move_of_absolute_consistency() -> None:
    ac = strategy_for("absolute-consistency", Params())
    seen = []
    a = ac.step(ac.start("a", TOPO, 0.0).state, WorkloadFenced(), 0.0)
    a = ac.step(a.state, LeaseObservedGone(None), 0.1)
    a = ac.step(a.state, LeaseAcquired(5, 0.1), 0.2)
    a = ac.step(a.state, WorkloadStarted(), 0.3)
    c = ac.step(ac.start("c", TOPO, 0.0).state, WorkloadFenced(), 0.0)
    for happened, now in ((MoveRequested("c"), 1.0), (WorkloadStopped(), 1.2)):
        a = ac.step(a.state, happened, now)
        seen += steps_seen(a.commands, "a", "a", "c")
    a = ac.step(a.state, LeaseReleased(), 1.3)
    c = ac.step(c.state, MoveRequested("c"), 1.0)
    c = ac.step(c.state, LeaseObservedGone(6), 1.4)
    seen += steps_seen(c.commands, "c", "a", "c")
    expected = move_steps("absolute-consistency", "a", "c")
    assert seen == [(s.step, s.site) for s in expected]


def test_sba_move_steps_are_the_operator_move_of_split_brain_allowed() -> None:
    sba = strategy_for("split-brain-allowed", Params())
    seen = []
    a = sba.step(sba.start("a", TOPO, 0.0).state, PeerCopiesSeen(()), 0.1)
    a = sba.step(a.state, WorkloadStarted(), 0.2)
    b = sba.step(sba.start("b", TOPO, 0.0).state, PeerCopiesSeen((Copy("a", 0.2),)), 0.1)
    b = sba.step(b.state, MoveRequested("b"), 1.0)
    seen += steps_seen(b.commands, "b", "a", "b")
    b = sba.step(b.state, WorkloadStarted(), 1.2)
    seen.append((Step.AWAIT_RUNNING, "b"))  # the old site stops only once it sees it run
    a = sba.step(a.state, MoveRequested("b"), 1.0)
    assert steps_seen(a.commands, "a", "a", "b") == []
    a = sba.step(a.state, PeerCopiesSeen((Copy("a", 0.2), Copy("b", 1.2))), 1.5)
    seen += steps_seen(a.commands, "a", "a", "b")
    expected = move_steps("split-brain-allowed", "a", "b")
    assert seen == [(s.step, s.site) for s in expected]
