"""SplitBrainAllowed across random partitions, crashes and heals.

After every settle: each side of the partition that has a live site keeps exactly one copy
running (the first live site of the topology on that side, unless reconcile kept another),
and a side without live sites runs none. After a heal that means exactly one copy overall.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule
from support.sba_world import SbaWorld

from harmony.strategies import RECONCILE_POLICIES, Params
from harmony.strategies.events import ShutdownRequested

SITE = st.integers(0, 4)


def check_sides(w: SbaWorld) -> None:
    for group in {n.group for n in w.nodes.values()}:
        running, eligible = w.running_in(group), w.eligible_in(group)
        assert len(running) == (1 if eligible else 0), (group, eligible, running)


def test_partition_then_heal_keeps_one_copy_per_side_then_one_overall() -> None:
    for policy, survivor in (("keep-original", "s0"), ("keep-replacement", "s1")):
        w = SbaWorld(3, Params(reconcile=policy))
        w.settle()
        assert w.running_in(0) == ["s0"]
        w.nodes["s0"].group = 1  # the primary is cut off; s1 must replace it at once
        w.settle()
        assert w.running_in(1) == ["s0"] and w.running_in(0) == ["s1"]
        for n in w.nodes.values():
            n.group = 0
        w.settle()
        assert w.running_in(0) == [survivor] and w.divergences == 1


class SplitBrainMachine(RuleBasedStateMachine):
    world: SbaWorld

    @initialize(
        n=st.integers(2, 5),
        policy=st.sampled_from(RECONCILE_POLICIES),
        cooldown=st.floats(0.0, 5.0),
    )
    def setup(self, n: int, policy: str, cooldown: float) -> None:
        self.world = SbaWorld(n, Params(reconcile=policy, failed_cooldown=cooldown))

    def site(self, i: int) -> str:
        return self.world.names[i % len(self.world.names)]

    @rule(groups=st.lists(st.integers(0, 2), min_size=5, max_size=5))
    def partition(self, groups: list[int]) -> None:
        for name, g in zip(self.world.names, groups, strict=False):
            self.world.nodes[name].group = g

    @rule()
    def heal(self) -> None:
        for node in self.world.nodes.values():
            node.group = 0

    @rule(i=SITE)
    def crash(self, i: int) -> None:
        self.world.crash(self.site(i))

    @rule(i=SITE)
    def restart(self, i: int) -> None:
        if self.world.nodes[self.site(i)].decision is None:
            self.world.boot(self.site(i))

    @rule(i=SITE, fail=st.booleans())
    def drive(self, i: int, fail: bool) -> None:
        self.world.drive(self.site(i), fail=fail)

    @rule(i=SITE)
    def tell_truth(self, i: int) -> None:
        self.world.tell_truth(self.site(i))

    @rule(i=SITE)
    def tell_copies(self, i: int) -> None:
        self.world.tell_copies(self.site(i))

    @rule(dt=st.floats(0.0, 6.0))
    def advance(self, dt: float) -> None:
        self.world.advance(dt)

    @rule(i=SITE)
    def shutdown(self, i: int) -> None:
        self.world.feed(self.site(i), ShutdownRequested())

    @rule()
    def settle_and_check(self) -> None:
        self.world.settle()
        check_sides(self.world)

    def teardown(self) -> None:
        if hasattr(self, "world"):
            self.heal()
            self.world.settle()
            check_sides(self.world)


SplitBrainMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSplitBrainMachine = SplitBrainMachine.TestCase
