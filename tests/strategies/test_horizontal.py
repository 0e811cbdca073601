"""horizontal: slots spread over usable live sites; forced moves at once, rebalance with
hysteresis and a disruption budget; a random caller that completes moves late or never."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from harmony.strategies import (
    FailoverTopology,
    HorizontalSpec,
    HorizontalState,
    Plan,
    SiteFacts,
    parse_constraints,
    plan_horizontal,
    slot_lease,
    slot_topology,
)
from harmony.strategies.horizontal import SLOT_RULES, MoveKind, SlotAct, SlotFacts, usable
from harmony.strategies.tables import first_match


def six(dead: Sequence[str] = (), capacity: int = 1) -> list[SiteFacts]:
    """s0-s2 in region eu (EU), s3-s5 in region us (US)."""
    return [
        SiteFacts(
            f"s{i}",
            {"region": "eu" if i < 3 else "us", "jurisdiction": "EU" if i < 3 else "US"},
            capacity=capacity,
            alive=f"s{i}" not in dead,
        )
        for i in range(6)
    ]


def done(p: Plan) -> dict[int, str]:
    """The caller carried out every move of the plan."""
    return dict(p.placement)


def per_domain(placement: Mapping[int, str], sites: Sequence[SiteFacts], label: str) -> Counter:
    by_name = {s.name: s for s in sites}
    return Counter(by_name[site].labels[label] for site in placement.values())


def test_slot_rules_exhaustively() -> None:
    for bits in range(64):
        f = SlotFacts(*(bool(bits >> i & 1) for i in range(6)))
        act, _ = first_match(SLOT_RULES, f)
        if f.pending:
            assert act is (SlotAct.KEEP if f.arrived else SlotAct.WAIT)
        elif not f.running:
            assert act is SlotAct.PLACE
        elif not f.site_alive:
            assert act is SlotAct.REPLACE
        elif not f.site_eligible:
            assert act is SlotAct.EVICT
        elif f.crowded:
            assert act is SlotAct.SHED
        else:
            assert act is SlotAct.KEEP


def test_five_replicas_over_six_sites_spread_and_replace_lost_copies() -> None:
    spec = HorizontalSpec(5, spread_label="region", settle=10.0)
    p = plan_horizontal(spec, HorizontalState(), six(), {}, 0.0)
    assert [m.kind for m in p.moves] == [MoveKind.PLACE] * 5
    assert sorted(per_domain(p.placement, six(), "region").values()) == [2, 3]
    current = done(p)
    p = plan_horizontal(spec, p.state, six(), current, 1.0)
    assert p.moves == () and p.state.pending == {}

    lost = {site for site in current.values() if site in ("s0", "s3")}
    p = plan_horizontal(spec, p.state, six(dead=("s0", "s3"), capacity=2), current, 2.0)
    replaced = {m.slot for m in p.moves}
    assert all(m.kind is MoveKind.REPLACE and m.source in lost for m in p.moves)
    assert replaced == {s for s, site in current.items() if site in lost}
    assert all(m.target not in ("s0", "s3") for m in p.moves)
    assert "was lost" in p.moves[0].reason


def test_too_few_sites_place_what_fits_and_say_why() -> None:
    spec = HorizontalSpec(5, constraints=parse_constraints(['jurisdiction in ["EU"]']))
    p = plan_horizontal(spec, HorizontalState(), six(dead=("s2",)), {}, 0.0)
    assert sorted(p.placement.values()) == ["s0", "s1"]
    assert any("2 of 5 replicas placed: 2 usable live sites" in n for n in p.notes)
    assert any("outside jurisdiction" in n for n in p.notes)


def test_heal_rebalances_after_settle_within_the_disruption_budget() -> None:
    spec = HorizontalSpec(4, spread_label="region", settle=10.0, max_unavailable=1)
    sites = six(dead=("s3", "s4", "s5"), capacity=2)
    p = plan_horizontal(spec, HorizontalState(), sites, {}, 0.0)
    assert set(per_domain(p.placement, sites, "region")) == {"eu"}
    current = done(p)
    p = plan_horizontal(spec, p.state, six(capacity=2), current, 5.0)  # us is back
    assert p.moves == () and p.wake_at == 15.0 and "rebalance once it lasts 10 s" in p.notes[0]
    p = plan_horizontal(spec, p.state, six(capacity=2), current, 14.9)
    assert p.moves == ()
    p = plan_horizontal(spec, p.state, six(capacity=2), current, 15.0)
    assert [m.kind for m in p.moves] == [MoveKind.REBALANCE]  # one at a time
    assert p.moves[0].target in ("s3", "s4", "s5")
    p2 = plan_horizontal(spec, p.state, six(capacity=2), current, 16.0)
    assert p2.moves == () and "rest of the rebalance waits" in p2.notes[-1]
    current = done(p)
    p = plan_horizontal(spec, p2.state, six(capacity=2), current, 17.0)
    assert [m.kind for m in p.moves] == [MoveKind.REBALANCE]
    current = done(p)
    p = plan_horizontal(spec, p.state, six(capacity=2), current, 18.0)
    assert p.moves == () and p.state.imbalanced_since is None
    assert per_domain(current, six(), "region") == {"eu": 2, "us": 2}


def test_weights_shape_the_spread() -> None:
    spec = HorizontalSpec(6, spread_label="region", weights={"eu": 2.0, "us": 1.0})
    sites = six(capacity=3)
    p = plan_horizontal(spec, HorizontalState(), sites, {}, 0.0)
    assert per_domain(p.placement, sites, "region") == {"eu": 4, "us": 2}
    only_eu = HorizontalSpec(2, spread_label="region", weights={"eu": 1.0})
    ok, why = usable(only_eu, sites)
    assert {s.name for s in ok} == {"s0", "s1", "s2"} and "no spread weight" in why["s3"]


def test_a_site_leaving_the_constraints_is_evicted_at_once_even_without_room() -> None:
    spec = HorizontalSpec(1, constraints=parse_constraints(['jurisdiction in ["EU"]']))
    moved = six(dead=("s1", "s2"))
    moved[0] = SiteFacts("s0", {"jurisdiction": "US", "region": "eu"})
    p = plan_horizontal(spec, HorizontalState(), moved, {0: "s0"}, 0.0)
    [m] = p.moves
    assert (m.kind, m.source, m.target) == (MoveKind.EVICT, "s0", None)
    assert "outside jurisdiction" in m.reason


def test_a_crowded_site_sheds_a_copy_only_where_another_site_has_room() -> None:
    p = plan_horizontal(HorizontalSpec(2), HorizontalState(), six(), {0: "s0", 1: "s0"}, 0.0)
    [m] = p.moves
    assert (m.slot, m.source, m.kind) == (1, "s0", MoveKind.EVICT) and m.target != "s0"
    alone = six(dead=("s1", "s2", "s3", "s4", "s5"))
    p = plan_horizontal(HorizontalSpec(2), HorizontalState(), alone, {0: "s0", 1: "s0"}, 0.0)
    assert p.moves == () and dict(p.placement) == {0: "s0", 1: "s0"}
    assert "kept" in p.notes[0]


def test_a_move_that_never_completes_is_given_up_and_planned_again() -> None:
    spec = HorizontalSpec(1, move_timeout=60.0)
    p = plan_horizontal(spec, HorizontalState(), six(), {}, 0.0)
    [m] = p.moves
    assert p.wake_at == 60.0
    p = plan_horizontal(spec, p.state, six(), {0: "s5"}, 59.0)  # it came up elsewhere
    assert p.moves == () and p.state.pending[0].target == m.target
    p = plan_horizontal(spec, p.state, six(), {0: "s5"}, 60.0)
    assert p.moves == () and p.state.pending == {} and dict(p.placement) == {0: "s5"}
    assert "timed out" in p.notes[0]


def test_lowering_replicas_stops_the_extra_slots() -> None:
    p = plan_horizontal(HorizontalSpec(1), HorizontalState(), six(), {0: "s0", 1: "s1"}, 0.0)
    [m] = p.moves
    assert (m.slot, m.source, m.target, m.kind) == (1, "s1", None, MoveKind.EVICT)


def test_a_slot_is_a_failover_topology_with_a_lease_of_its_own() -> None:
    assert slot_lease("web", 3) == "web--3"  # a valid workload, subject and bucket name
    names = ["s0", "s1", "s2", "s3"]
    assert slot_topology(1, "s3", names) == FailoverTopology.of("s3", "s1", "s2", "s0")
    assert slot_topology(2, None, names, warm=True) == FailoverTopology.of(
        "s2", "s3", "s0", "s1", warm=True
    )
    assert slot_topology(0, None, []) is None


# -- random worlds --------------------------------------------------------------------------

SITE_FACTS = st.builds(
    lambda i, region, j, cap: SiteFacts(
        f"s{i}", {"region": region, "jurisdiction": j}, capacity=cap
    ),
    st.integers(0, 7),
    st.sampled_from(["a", "b", "c"]),
    st.sampled_from(["EU", "EU", "US"]),
    st.integers(1, 3),
)
SPECS = st.builds(
    HorizontalSpec,
    replicas=st.integers(0, 7),
    spread_label=st.sampled_from([None, "region"]),
    max_skew=st.integers(1, 2),
    max_unavailable=st.integers(1, 3),
    settle=st.sampled_from([0.0, 5.0, 20.0]),
    constraints=st.sampled_from([(), parse_constraints(['jurisdiction in ["EU"]'])]),
)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("toggle"), st.integers(0, 7)),
        st.tuples(st.just("advance"), st.floats(0.0, 15.0)),
        st.tuples(st.just("arrive"), st.integers(0, 7)),  # a pending move completes
        st.tuples(st.just("stop"), st.integers(0, 7)),  # a moving copy stopped at its source
        st.tuples(st.just("crash"), st.integers(0, 7)),  # a copy dies where it runs
    ),
    max_size=40,
)


def skew(spec: HorizontalSpec, placement: Mapping[int, str], sites: list[SiteFacts]) -> int:
    live, _ = usable(spec, [s for s in sites if s.alive])
    counts = Counter({(s.labels["region"] if spec.spread_label else s.name): 0 for s in live})
    by_name = {s.name: s for s in live}
    for site in placement.values():
        s = by_name[site]
        counts[s.labels["region"] if spec.spread_label else s.name] += 1
    return max(counts.values(), default=0) - min(counts.values(), default=0)


def check(spec: HorizontalSpec, p: Plan, sites: list[SiteFacts], current: dict[int, str]) -> None:
    live, _ = usable(spec, sites)
    ok = {s.name: s for s in live if s.alive}
    for m in p.moves:
        assert m.target is None or m.target in ok, m  # never outside constraints or dead
    assert set(p.placement.values()) <= set(ok)
    per_site = Counter(p.placement.values())
    if any(per_site[n] > ok[n].capacity for n in per_site):  # kept: no room anywhere else
        assert all(per_site[n] >= ok[n].capacity for n in ok), p.notes
    for slot, site in current.items():  # every copy outside the usable live sites moves
        if site not in ok or slot >= spec.replicas:
            assert any(m.slot == slot for m in p.moves) or p.state.pending.get(slot)
    moving = sum(1 for x in p.state.pending.values() if x.kind is MoveKind.REBALANCE)
    assert moving <= spec.max_unavailable
    if any(m.kind is MoveKind.REBALANCE for m in p.moves):
        running = sum(1 for s in current if s < spec.replicas and s not in p.state.pending)
        assert spec.replicas - running <= spec.max_unavailable


@settings(max_examples=400, deadline=None)
@given(spec=SPECS, facts=st.lists(SITE_FACTS, min_size=1, unique_by=lambda s: s.name), ops=OPS)
def test_random_worlds_keep_the_invariants_and_converge(
    spec: HorizontalSpec, facts: list[SiteFacts], ops: list[tuple[str, float]]
) -> None:
    sites = list(facts)
    names = [s.name for s in sites]
    state, current, now = HorizontalState(), dict[int, str](), 0.0
    p = plan_horizontal(spec, state, sites, current, now)
    check(spec, p, sites, current)
    for op, arg in ops:
        if op == "toggle":
            i = int(arg) % len(sites)
            s = sites[i]
            sites[i] = SiteFacts(s.name, s.labels, s.capacity, alive=not s.alive)
            current = {k: v for k, v in current.items() if v != s.name or not s.alive}
        elif op == "advance":
            now += arg
        elif op in ("arrive", "stop") and p.state.pending:
            slot = sorted(p.state.pending)[int(arg) % len(p.state.pending)]
            if op == "arrive":
                current[slot] = p.state.pending[slot].target
            else:
                current.pop(slot, None)
        elif op == "crash" and current:
            current.pop(sorted(current)[int(arg) % len(current)])
        for m in p.moves:  # evictions without a target stop at once
            if m.target is None:
                current.pop(m.slot, None)
        p = plan_horizontal(spec, p.state, sites, current, now)
        check(spec, p, sites, current)

    # heal: every site alive, the caller carries out every move; it settles, within skew
    sites = [SiteFacts(s.name, s.labels, spec.replicas + 1) for s in sites]
    for _ in range(3 * spec.replicas + 3):
        current = {k: v for k, v in done(p).items()}
        now += spec.settle + 1
        p = plan_horizontal(spec, p.state, sites, current, now)
        check(spec, p, sites, current)
        if not p.moves and p.wake_at is None:
            break
    assert p.moves == () and p.wake_at is None, p
    usable_names = {s.name for s in usable(spec, sites)[0]}
    assert len(p.placement) == (spec.replicas if usable_names else 0)
    assert skew(spec, p.placement, sites) <= spec.max_skew
    assert set(names) >= set(p.placement.values())
    again = plan_horizontal(spec, p.state, sites, dict(p.placement), now + 100)
    assert again.moves == ()  # settled: no flapping
