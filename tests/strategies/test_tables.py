"""The tables themselves: complete where they must be, and saying what the docs say."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from types import SimpleNamespace
from typing import get_args

import pytest

from harmony.strategies import (
    RECONCILE_POLICIES,
    STRATEGY_NAMES,
    Event,
    FailoverTopology,
    Params,
    strategy_for,
)
from harmony.strategies.absolute import AbsoluteConsistency
from harmony.strategies.base import UnknownEvent
from harmony.strategies.events import Copy, LeaseEvent
from harmony.strategies.lease_fold import LEASE_HANDLERS
from harmony.strategies.names import DEFAULT_RECONCILE, DEFAULT_STRATEGY
from harmony.strategies.registry import STRATEGIES, abbreviation
from harmony.strategies.split_brain import SplitBrainAllowed
from harmony.strategies.tables import (
    AC_GOALS,
    DRIVER_REPORTS,
    LEASE_RULES,
    RECONCILE_KEYS,
    SBA_GOALS,
    WORKLOAD_ACTIONS,
    AcFacts,
    Act,
    Goal,
    LeaseFacts,
    Phase,
    SbaFacts,
    first_match,
)


def test_strategy_names_match_the_config_and_lookup_explains_errors() -> None:
    assert STRATEGY_NAMES == ("absolute-consistency", "split-brain-allowed")
    assert isinstance(strategy_for("absolute-consistency"), AbsoluteConsistency)
    assert isinstance(strategy_for("split-brain-allowed"), SplitBrainAllowed)
    with pytest.raises(ValueError, match="valid names: absolute-consistency, split-brain-allowed"):
        strategy_for("AbsoluteConsistency")


def test_reconcile_policies_match_the_config() -> None:
    assert RECONCILE_POLICIES == ("keep-original", "keep-replacement", "best-score")
    with pytest.raises(ValueError, match="valid: keep-original, keep-replacement, best-score"):
        Params(reconcile="newest")


def test_every_listed_name_has_its_strategy_policy_and_abbreviation() -> None:
    """The names are written once (`names`): the registry and the reconcile table follow."""
    assert tuple(STRATEGIES) == STRATEGY_NAMES
    assert tuple(RECONCILE_KEYS) == RECONCILE_POLICIES
    assert [abbreviation(n) for n in STRATEGY_NAMES] == ["AC", "SBA"]
    assert abbreviation("from-a-newer-site") == "from-a-newer-site"
    assert DEFAULT_STRATEGY in STRATEGY_NAMES and DEFAULT_RECONCILE in RECONCILE_POLICIES
    assert Params().reconcile == DEFAULT_RECONCILE


def test_params_from_timings_reads_config_names_and_rejects_unknown_options() -> None:
    timings = SimpleNamespace(
        lease_ttl=9, renew_interval=1, fence_margin=3, stop_grace=2, heartbeat_interval=0.5
    )
    p = Params.from_timings(timings, reconcile="best-score", failback=True)
    assert (p.lease_ttl, p.fence_offset, p.reconcile, p.failback) == (9.0, 6.0, "best-score", True)
    with pytest.raises(ValueError, match="unknown strategy option"):
        Params.from_timings(timings, colour="red")


def test_topology_order_and_validation() -> None:
    t = FailoverTopology.of("a", "b", "c")
    assert t.sites == ("a", "b", "c") and "b" in t and "z" not in t
    assert [t.rank(s) for s in ("a", "b", "c", "z")] == [0, 1, 2, 3]
    assert t.before("c") == ("a", "b") and t.before("a") == ()
    with pytest.raises(ValueError, match="twice"):
        FailoverTopology.of("a", "b", "a")
    with pytest.raises(ValueError, match="primary"):
        FailoverTopology("")
    with pytest.raises(ValueError, match="not in the topology"):
        SplitBrainAllowed().start("z", t, 0.0)


def test_an_active_copy_without_a_valid_lease_is_always_fenced() -> None:
    """The safety row: whatever else is true, `active and not valid` fences."""
    for valid, leaving, warm, cooling in itertools.product((False, True), repeat=4):
        goal, _ = first_match(AC_GOALS, AcFacts(True, False, valid, leaving, warm, cooling))
        if not valid:
            assert goal is Goal.FENCED
    for phase in (Phase.STARTING, Phase.RUNNING, Phase.STOPPING):
        assert WORKLOAD_ACTIONS[(Goal.FENCED, phase, True)] is Act.FENCE


def test_no_copy_is_started_active_unless_the_lease_is_valid() -> None:
    for active, leaving, warm, cooling in itertools.product((False, True), repeat=4):
        goal, _ = first_match(AC_GOALS, AcFacts(active, False, False, leaving, warm, cooling))
        assert goal is not Goal.ACTIVE
    starts = {k for k, v in WORKLOAD_ACTIONS.items() if v in (Act.START_ACTIVE, Act.PROMOTE)}
    assert {goal for goal, _, _ in starts} == {Goal.ACTIVE}


def lease_facts(**kw: bool) -> LeaseFacts:
    base = dict(pending=False, holding=False, leaving=False, stopped=True, due=False)
    return LeaseFacts(**{**base, "retry_ok": True, "may_acquire": False, **kw})


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (lease_facts(pending=True, holding=True, due=True, may_acquire=True), None),
        (lease_facts(holding=True, leaving=True), "release"),  # no need to wait for cadence
        (lease_facts(holding=True, leaving=True, retry_ok=False), None),  # after a failure
        (lease_facts(holding=True, leaving=True, stopped=False, due=True), "renew"),  # stopping
        (lease_facts(holding=True, due=True), "renew"),
        (lease_facts(holding=True), None),  # renewal not due yet
        (lease_facts(may_acquire=True), "acquire"),
        (lease_facts(may_acquire=True, retry_ok=False), None),
        (lease_facts(), None),  # deferring to a better candidate
    ],
)
def test_lease_rules(facts: LeaseFacts, expected: str | None) -> None:
    request, why = first_match(LEASE_RULES, facts)
    assert (request.value if request else None) == expected and why


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (SbaFacts(False, True, True, False, True, False, True, False), Goal.STOPPED),
        (SbaFacts(False, False, True, True, True, True, True, False), Goal.STOPPED),
        (
            SbaFacts(False, False, True, False, False, True, True, False),
            Goal.RUN,
        ),  # never on silence
        (SbaFacts(False, False, False, False, False, False, True, False), Goal.STOPPED),
        (SbaFacts(False, False, False, False, True, True, True, False), Goal.STOPPED),
        (SbaFacts(False, False, False, False, True, False, False, False), Goal.STOPPED),
        (SbaFacts(False, False, False, False, True, False, True, True), Goal.STOPPED),
        (SbaFacts(False, False, False, False, True, False, True, False), Goal.RUN),
        (SbaFacts(True, False, True, False, True, False, True, False), Goal.FENCED),  # unknown
        (SbaFacts(True, True, False, False, True, False, True, False), Goal.FENCED),
    ],
)
def test_split_brain_goals(facts: SbaFacts, expected: Goal) -> None:
    assert first_match(SBA_GOALS, facts)[0] is expected


def test_every_phase_reaches_stopped_on_stop_fence_or_exit() -> None:
    for phase in Phase:
        if phase is Phase.STOPPED:
            assert {r for p, r in DRIVER_REPORTS if p is phase} == {"unknown"}
            continue
        for report in ("stopped", "fenced", "exited"):
            assert DRIVER_REPORTS[(phase, report)] is Phase.STOPPED
    # a stop or fence in progress reports its own outcome: a restart report meanwhile is stale
    assert (Phase.FENCING, "restarting") not in DRIVER_REPORTS
    assert (Phase.STOPPING, "restarting") not in DRIVER_REPORTS


def test_unknown_is_never_taken_for_stopped() -> None:
    """From every phase an unknown report means "may run"; only facts leave that state."""
    for phase in Phase:
        assert DRIVER_REPORTS[(phase, "unknown")] is Phase.UNKNOWN
    leaves = {r: p for (ph, r), p in DRIVER_REPORTS.items() if ph is Phase.UNKNOWN}
    assert leaves == {
        "started": Phase.RUNNING,  # a probe recovered
        "stopped": Phase.STOPPED,
        "fenced": Phase.STOPPED,
        "exited": Phase.STOPPED,
        "unknown": Phase.UNKNOWN,
    }
    for active in (False, True):
        assert WORKLOAD_ACTIONS[(Goal.FENCED, Phase.UNKNOWN, active)] is Act.FENCE


def test_an_unknown_copy_is_fenced_whatever_the_lease_says() -> None:
    for active, valid, leaving, warm, cooling in itertools.product((False, True), repeat=5):
        goal, _ = first_match(AC_GOALS, AcFacts(active, True, valid, leaving, warm, cooling))
        assert goal is Goal.FENCED


@pytest.mark.parametrize(
    ("policy", "winner"),
    [("keep-original", "b"), ("keep-replacement", "c"), ("best-score", "a")],
)
def test_reconcile_policies_pick_one_copy(policy: str, winner: str) -> None:
    copies = [Copy("a", 30.0, score=5.0), Copy("b", 10.0, score=1.0), Copy("c", 40.0, 2.0)]
    sba = SplitBrainAllowed(Params(reconcile=policy))
    state = sba.start("a", FailoverTopology.of("a", "b", "c"), 0.0).state
    best = sba.winner(state, copies)
    assert best is not None and best.site == winner


@pytest.mark.parametrize("policy", RECONCILE_POLICIES)
def test_reconcile_ties_go_to_topology_order(policy: str) -> None:
    copies = [Copy("c", 1.0), Copy("b", 1.0)]
    sba = SplitBrainAllowed(Params(reconcile=policy))
    state = sba.start("a", FailoverTopology.of("a", "b", "c"), 0.0).state
    best = sba.winner(state, copies)
    assert best is not None and best.site == "b"


STRATEGIES_BY_NAME = {"AC": AbsoluteConsistency, "SBA": SplitBrainAllowed}


@dataclass(frozen=True)
class FromANewerRelease:
    """An event type no strategy knows (a caller built against another version, say)."""


@pytest.mark.parametrize("cls", STRATEGIES_BY_NAME.values(), ids=STRATEGIES_BY_NAME)
def test_every_event_type_has_a_row_in_every_strategys_folds(cls: type) -> None:
    """Each strategy says what it does with every event, ignoring included, in one table."""
    assert set(cls.folds) == set(get_args(Event))
    assert set(LEASE_HANDLERS) == set(get_args(LeaseEvent))


@pytest.mark.parametrize("cls", STRATEGIES_BY_NAME.values(), ids=STRATEGIES_BY_NAME)
def test_an_event_type_a_strategy_does_not_take_is_an_error(cls: type) -> None:
    strategy = cls()
    state = strategy.start("a", FailoverTopology.of("a", "b"), 0.0).state
    with pytest.raises(UnknownEvent, match=f"{cls.__name__} takes no FromANewerRelease"):
        strategy.step(state, FromANewerRelease(), 1.0)
