"""Horizontal + absolute-consistency: each slot is a failover workload with a lease of its
own, and the plan's moves reach the unchanged AbsoluteConsistency as `MoveRequested`.

One simulated lease world (`support.lease_world`, as in test_ac_world) per slot, all over
the same sites: crashes, restarts and cuts hit a site in every slot's world at once, while
requests, watches and drivers of each slot go their own random ways. The plan runs from
what it can see (live sites, where each slot's active copy runs) whenever Hypothesis says.
`World.check` raises after every single step if two copies of one slot are active.
"""

from __future__ import annotations

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule
from support.lease_world import World

from harmony.strategies import (
    HorizontalSpec,
    HorizontalState,
    Move,
    Params,
    SiteFacts,
    plan_horizontal,
    slot_topology,
)
from harmony.strategies.events import MoveRequested, PeerSilent
from harmony.strategies.horizontal import MoveKind

SAFE = Params(lease_ttl=8.0, renew_interval=1.0, fence_margin=2.5, stop_grace=1.5)
SITE = st.integers(0, 4)
SLOT = st.integers(0, 2)


def slot_worlds(n: int, replicas: int) -> list[World]:
    """One lease world per slot over sites s0 .. s(n-1), each under its slot's topology."""
    worlds = []
    for slot in range(replicas):
        w = World(n, SAFE, fence_slack=0.5, request_timeout=0.5)
        topology = slot_topology(slot, None, w.names)
        assert topology is not None
        w.topology = topology
        for name in w.names:  # boot again under the slot's own topology
            w.boot(name)
        worlds.append(w)
    return worlds


def visible(worlds: list[World], capacity: int = 1) -> tuple[list[SiteFacts], dict[int, str]]:
    """What a planner sees: live sites, and where each slot's active copy runs."""
    w0 = worlds[0]
    sites = [
        SiteFacts(
            n, capacity=capacity, alive=w0.nodes[n].decision is not None and w0.nodes[n].connected
        )
        for n in w0.names
    ]
    current = {}
    for slot, w in enumerate(worlds):
        running = w.active_sites()
        if running:
            current[slot] = running[0]
    return sites, current


def hand_over(worlds: list[World], moves: tuple[Move, ...]) -> None:
    """Each move reaches every site of its slot as the operator-move event (crashed sites
    hear nothing)."""
    for m in moves:
        assert m.target is not None
        for name in worlds[m.slot].names:
            worlds[m.slot].feed(name, MoveRequested(m.target))


def run(worlds: list[World], seconds: float) -> None:
    for _ in range(int(seconds / 0.1)):
        for w in worlds:
            w.pump(truth=True)
            w.advance(0.1, healthy=True)


def test_a_lost_slot_is_replaced_where_the_plan_says_and_does_not_fail_back() -> None:
    spec = HorizontalSpec(2, settle=5.0)
    worlds = slot_worlds(3, 2)
    run(worlds, 3.0)
    sites, current = visible(worlds)
    assert current == {0: "s0", 1: "s1"}
    p = plan_horizontal(spec, HorizontalState(), sites, current, worlds[0].now)
    assert p.moves == ()
    for w in worlds:
        w.crash("s0")
    sites, current = visible(worlds)
    p = plan_horizontal(spec, p.state, sites, current, worlds[0].now)
    [m] = p.moves
    assert (m.slot, m.source, m.target, m.kind) == (0, "s0", "s2", MoveKind.REPLACE)
    hand_over(worlds, p.moves)
    run(worlds, 2 * SAFE.lease_ttl)
    assert [w.active_sites() for w in worlds] == [["s2"], ["s1"]]
    assert worlds[0].tokens[-1][0] == "s2"
    for w in worlds:
        w.boot("s0")
    run(worlds, 2.0)
    sites, current = visible(worlds)
    p = plan_horizontal(spec, p.state, sites, current, worlds[0].now + 100)
    assert p.moves == () and p.state.pending == {}  # within max_skew: no failback
    run(worlds, 2 * SAFE.lease_ttl)
    assert [w.active_sites() for w in worlds] == [["s2"], ["s1"]]


class HorizontalSlotsMachine(RuleBasedStateMachine):
    worlds: list[World]

    @initialize(
        n=st.integers(2, 5),
        replicas=st.integers(1, 3),
        settle=st.floats(0.0, 5.0),
        capacity=st.integers(1, 3),
    )
    def setup(self, n: int, replicas: int, settle: float, capacity: int) -> None:
        self.capacity = capacity
        self.spec = HorizontalSpec(replicas, max_unavailable=1, settle=settle)
        self.state = HorizontalState()
        self.worlds = slot_worlds(n, replicas)

    @property
    def names(self) -> list[str]:
        return self.worlds[0].names

    def site(self, i: int) -> str:
        return self.names[i % len(self.names)]

    def world(self, j: int) -> World:
        return self.worlds[j % len(self.worlds)]

    @rule(dt=st.floats(0.01, 3.0), healthy=st.booleans())
    def advance(self, dt: float, healthy: bool) -> None:
        for w in self.worlds:
            if healthy:
                w.pump(truth=True)
            w.advance(dt, healthy=healthy)

    @rule(j=SLOT, i=SITE)
    def serve_and_answer(self, j: int, i: int) -> None:
        self.world(j).serve(self.site(i))
        self.world(j).answer(self.site(i))

    @rule(j=SLOT, i=SITE)
    def deliver_watch(self, j: int, i: int) -> None:
        self.world(j).deliver_watch(self.site(i))

    @rule(j=SLOT, i=SITE)
    def drive(self, j: int, i: int) -> None:
        self.world(j).drive(self.site(i))

    @rule(j=SLOT, i=SITE, k=SITE)
    def lie(self, j: int, i: int, k: int) -> None:
        """A site is told, wrongly perhaps, that a peer is silent: safety must not care."""
        self.world(j).feed(self.site(i), PeerSilent(self.site(k)))

    @rule(i=SITE)
    def crash(self, i: int) -> None:
        for w in self.worlds:
            w.crash(self.site(i))

    @rule(i=SITE)
    def restart(self, i: int) -> None:
        for w in self.worlds:
            if w.nodes[self.site(i)].decision is None:
                w.boot(self.site(i))

    @rule(i=SITE, connected=st.booleans())
    def cut(self, i: int, connected: bool) -> None:
        for w in self.worlds:
            w.cut(self.site(i), connected)

    @rule()
    def replan(self) -> None:
        """Plan from what is visible and hand each move to that slot's sites."""
        sites, current = visible(self.worlds, self.capacity)
        p = plan_horizontal(self.spec, self.state, sites, current, self.worlds[0].now)
        self.state = p.state
        for m in p.moves:
            event(f"a {m.kind} move")
        hand_over(self.worlds, p.moves)

    def teardown(self) -> None:
        if not getattr(self, "worlds", None):
            return
        for w in self.worlds:
            for name in w.names:
                if w.nodes[name].decision is None:
                    w.boot(name)
        for _ in range(3):
            self.replan()
            for w in self.worlds:
                w.settle(4 * SAFE.lease_ttl)
        for w in self.worlds:
            assert len(w.active_sites()) == 1, w.active_sites()


HorizontalSlotsMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestHorizontalSlotsMachine = HorizontalSlotsMachine.TestCase
