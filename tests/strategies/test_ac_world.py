"""AbsoluteConsistency on the simulated lease store: scripted failovers, then random faults.

The Hypothesis machine drives 2-5 sites through random interleavings of time, lease requests
(answered, refused, timed out, lost, or committed after the sender gave up), watch deliveries,
expiry, driver reports and driver failures (failed probes, failed stops and fences, fences
that cannot be confirmed, probes that recover), lease-actor restarts, lies about peers,
partitions, elections, crashes that leave the copy behind, restarts and shutdowns.
`World.check` asserts the safety properties after every single step; teardown heals
everything and asserts that exactly one site ends up running the active copy.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule
from support.lease_world import Node, SafetyViolation, World

from harmony.strategies import Params
from harmony.strategies.events import PeerAlive, PeerSilent, PeerSuspect, ShutdownRequested

SAFE = Params(lease_ttl=8.0, renew_interval=1.0, fence_margin=2.5, stop_grace=1.5)


def world(n: int = 3, params: Params = SAFE, **kw: object) -> World:
    options = {"fence_slack": 0.5, "request_timeout": 0.5, **kw}
    return World(n, params, **options)  # type: ignore[arg-type]


def run_until(w: World, done: Callable[[], bool], limit: float, step: float = 0.05) -> float:
    """Let the healthy world run in small steps until `done()` holds; the time it took."""
    start = w.now
    while not done():
        assert w.now - start < limit, f"not done within {limit} s"
        w.pump(truth=True)
        w.advance(step, healthy=True)
    return w.now - start


def test_the_primary_takes_the_lease_at_boot_and_runs_alone() -> None:
    w = world()
    run_until(w, lambda: w.active_sites() == ["s0"], 3.0)
    w.settle(30.0)
    assert w.active_sites() == ["s0"] and w.tokens == [("s0", w.tokens[0][1])]


def test_primary_site_crash_fails_over_to_the_first_standby_within_ttl() -> None:
    w = world()
    run_until(w, lambda: w.active_sites() == ["s0"], 3.0)
    w.settle(2.3)  # mid-way between renewals
    w.crash("s0")
    took = run_until(w, lambda: w.active_sites() == ["s1"], 12.0)
    # the last renewal may have been written just before the crash: ttl + steps
    assert took <= SAFE.lease_ttl + 0.2
    assert w.tokens[-1][0] == "s1" and w.tokens[-1][1] > w.tokens[0][1]


def test_a_cut_off_primary_fences_before_the_standby_starts_and_keeps_off_after_heal() -> None:
    w = world()
    run_until(w, lambda: w.active_sites() == ["s0"], 3.0)
    w.cut("s0", False)
    fenced_at = None
    for _ in range(400):  # the primary keeps trying to renew; its requests time out
        for name in w.names:
            w.serve(name)
            w.deliver_watch(name)
            w.drive(name)
        if fenced_at is None and not w.active_copies():
            fenced_at = w.now
        w.feed("s1", PeerSilent("s0"))
        w.advance(0.05)
    assert fenced_at is not None and w.active_sites() == ["s1"]
    w.settle(20.0)  # healed: no automatic failback
    assert w.active_sites() == ["s1"]


def test_graceful_shutdown_hands_over_without_waiting_for_the_ttl() -> None:
    w = world()
    run_until(w, lambda: w.active_sites() == ["s0"], 3.0)
    w.feed("s0", ShutdownRequested())
    w.drive("s0")  # the workload stops promptly on SIGTERM
    took = run_until(w, lambda: w.active_sites() == ["s1"], 5.0)
    assert took < 2 * SAFE.rank_delay + 0.5 < SAFE.lease_ttl


def test_unsafe_timings_really_are_unsafe() -> None:
    """fence_margin 1.0 < stop_grace 2.0 (the old config defaults): two active copies."""
    unsafe = Params(lease_ttl=6.0, renew_interval=1.5, fence_margin=1.0, stop_grace=2.0)
    w = world(2, unsafe, fence_slack=0.0, request_timeout=1.0, check_timings=False)
    run_until(w, lambda: w.active_sites() == ["s0"], 3.0)
    w.cut("s0", False)
    w.feed("s1", PeerSilent("s0"))
    with pytest.raises(SafetyViolation, match=r"active copies|took the lease"):
        for _ in range(400):
            for name in w.names:
                w.serve(name)
                w.deliver_watch(name)
                if name == "s1":
                    w.drive(name)
            w.advance(0.05)


# -- random faults ------------------------------------------------------------------------


@st.composite
def safe_params(draw: st.DrawFn) -> tuple[Params, float, float]:
    """Random timings that pass check_timings: (params, fence_slack, request_timeout)."""
    ttl = draw(st.floats(2.0, 9.0))
    grace = ttl * draw(st.floats(0.02, 0.3))
    slack = ttl * draw(st.floats(0.0, 0.1))
    margin = grace + slack + 2e-3 * ttl + ttl * draw(st.floats(0.005, 0.1))
    renew = (ttl - margin) / draw(st.floats(3.05, 6.0))
    timeout = renew * draw(st.floats(0.2, 0.95))
    params = Params(
        lease_ttl=ttl,
        renew_interval=renew,
        fence_margin=margin,
        stop_grace=grace,
        heartbeat_interval=0.1,
        rank_delay=draw(st.floats(0.05, 1.5)),
        failed_cooldown=draw(st.floats(0.0, 3.0)),
        failback=draw(st.booleans()),
        failback_after=draw(st.floats(0.0, 3.0)),
    )
    problems = params.timing_problems(fence_slack=slack, request_timeout=timeout)
    assert problems == [], problems
    return params, slack, timeout


SITE = st.integers(0, 4)


class AbsoluteConsistencyMachine(RuleBasedStateMachine):
    world: World

    @initialize(n=st.integers(2, 5), timing=safe_params(), warm=st.booleans())
    def setup(self, n: int, timing: tuple[Params, float, float], warm: bool) -> None:
        params, slack, timeout = timing
        self.world = World(n, params, fence_slack=slack, request_timeout=timeout, warm=warm)

    def site(self, i: int) -> str:
        return self.world.names[i % len(self.world.names)]

    @rule(dt=st.floats(0.001, 4.0), healthy=st.booleans(), truth=st.booleans())
    def advance(self, dt: float, healthy: bool, truth: bool) -> None:
        """Time passes; `healthy`: requests, watches and drivers are prompt meanwhile."""
        if truth:
            self.world.pump(truth=True)
        self.world.advance(dt, healthy=healthy)

    @rule(i=SITE, delay=st.booleans(), drop=st.sampled_from([False, False, False, True]))
    def serve(self, i: int, delay: bool, drop: bool) -> None:
        self.world.serve(self.site(i), delay=delay, drop=drop)

    @rule(i=SITE)
    def answer(self, i: int) -> None:
        self.world.answer(self.site(i))

    @rule(i=SITE)
    def deliver_watch(self, i: int) -> None:
        self.world.deliver_watch(self.site(i))

    @rule()
    def expire(self) -> None:
        self.world.expire()

    @rule()
    def drop_marker(self) -> None:
        self.world.store.drop_marker()

    @rule(g=st.integers(0, 10))
    def commit_ghost(self, g: int) -> None:
        self.world.commit_ghost(g)

    @rule(i=SITE, fail=st.booleans(), restart=st.booleans())
    def drive(self, i: int, fail: bool, restart: bool) -> None:
        self.world.drive(self.site(i), fail=fail, restart=restart)

    @rule(i=SITE, how=st.sampled_from(["probe", "halt", "confirm", "recover"]))
    def driver_fails(self, i: int, how: str) -> None:
        self.world.driver_fails(self.site(i), how)

    @rule(i=SITE)
    def lease_actor_restart(self, i: int) -> None:
        self.world.lease_actor_restart(self.site(i))

    @rule(i=SITE, j=SITE, status=st.sampled_from([PeerAlive, PeerSuspect, PeerSilent]))
    def peer(self, i: int, j: int, status: type[PeerAlive | PeerSuspect | PeerSilent]) -> None:
        """Peer reports are arbitrary, even lies: safety must not depend on them."""
        self.world.feed(self.site(i), status(self.site(j)))

    @rule(i=SITE, connected=st.booleans())
    def cut(self, i: int, connected: bool) -> None:
        self.world.cut(self.site(i), connected)

    @rule(up=st.booleans())
    def election(self, up: bool) -> None:
        self.world.store.available = up

    @rule(i=SITE)
    def crash(self, i: int) -> None:
        self.world.crash(self.site(i))

    @rule(i=SITE)
    def restart(self, i: int) -> None:
        if self.world.nodes[self.site(i)].decision is None:
            self.world.boot(self.site(i))

    @rule(i=SITE)
    def shutdown(self, i: int) -> None:
        self.world.feed(self.site(i), ShutdownRequested())

    def eligible(self, node: Node) -> bool:
        """May run the copy after the heal: booted and not shutting down."""
        return node.decision is not None and not node.decision.state.shutting_down

    def teardown(self) -> None:
        w = getattr(self, "world", None)
        if w is None:
            return
        p = w.params
        slow = w.slow_stop + p.lease_ttl + p.failed_cooldown + p.failback_after
        w.settle(slow + 2 * p.lease_ttl + 6 * p.rank_delay + 3)
        eligible = [n.name for n in w.nodes.values() if self.eligible(n)]
        active = w.active_sites()
        assert len(active) == (1 if eligible else 0), (eligible, active)
        assert set(active) <= set(eligible)


AbsoluteConsistencyMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestAbsoluteConsistencyMachine = AbsoluteConsistencyMachine.TestCase


def test_a_slow_answer_does_not_stretch_the_lease_t0_is_the_send_time() -> None:
    """The renewal commits at once but its answer takes 0.8 s; then the holder is cut off.
    Counting t0 from the answer would fence 0.8 s too late with this thin margin."""
    thin = Params(lease_ttl=8.0, renew_interval=1.0, fence_margin=2.05, stop_grace=1.5)
    w = world(2, thin, request_timeout=0.9)
    run_until(w, lambda: w.active_sites() == ["s0"], 3.0)
    s0 = w.nodes["s0"]
    assert s0.decision is not None and s0.decision.wake_at is not None
    w.advance(s0.decision.wake_at - w.now)  # the renewal is sent ...
    w.serve("s0", delay=True)  # ... and committed at once; the answer is slow
    w.advance(0.8)
    w.answer("s0")
    w.cut("s0", False)
    run_until(w, lambda: w.active_sites() == ["s1"], 12.0)  # World.check: never two


@settings(max_examples=100, deadline=None)
@given(
    timing=safe_params(),
    n=st.integers(2, 5),
    cut_after=st.floats(0.0, 6.0),
    slow_answer=st.floats(0.0, 1.0),
    how=st.sampled_from(["cut", "crash", "election"]),
)
def test_a_holder_that_cannot_renew_is_down_before_anyone_else_takes_over(
    timing: tuple[Params, float, float], n: int, cut_after: float, slow_answer: float, how: str
) -> None:
    """The targeted version of the machine above: the holder's last renewal commits at once,
    its answer comes as late as the actor allows, then the holder is cut off (or crashes, or
    the stream leader is lost and comes back). Everyone else is prompt and told the truth, and
    the store expires the key exactly TTL after the last write."""
    params, slack, timeout = timing
    w = World(n, params, fence_slack=slack, request_timeout=timeout)
    run_until(w, lambda: w.active_sites() == ["s0"], 3.0)
    w.advance(cut_after, healthy=True)
    holder = w.nodes["s0"]
    assert holder.decision is not None and holder.decision.wake_at is not None
    w.advance(holder.decision.wake_at - w.now)  # a renewal is sent ...
    w.serve("s0", delay=True)  # ... commits at once, and its answer is slow
    w.advance(min(slow_answer * timeout, timeout * 0.99))
    w.answer("s0")
    if how == "cut":
        w.cut("s0", False)
    elif how == "crash":
        w.crash("s0")
    else:
        w.store.available = False
        w.advance(params.lease_ttl * 0.9, healthy=True)
        w.store.available = True
    end = w.now + 3 * params.lease_ttl
    while w.now < end:  # World.check raises on any overlap
        w.pump(truth=True)
        w.advance(0.05, healthy=True)
    assert len(w.active_sites()) <= 1


def test_a_primary_whose_copy_failed_with_its_standbys_dead_runs_it_again() -> None:
    """Found by the machine above: the copy fails to start, the primary hands the lease over
    (releases it) and nobody else is alive. The watch had reported the deletion before the
    release's answer came, and observers report only changes: unless a release asks for a
    fresh read, the primary waits for ever with its workload down."""
    m = AbsoluteConsistencyMachine()
    p = Params(
        lease_ttl=2.0,
        renew_interval=0.34275,
        fence_margin=0.629,
        stop_grace=0.5,
        heartbeat_interval=0.1,
        rank_delay=1.0,
        failed_cooldown=0.0,
        sync_grace=2.0,
    )
    m.setup(n=3, timing=(p, 0.0, 0.171375), warm=False)
    m.advance(dt=1.0, healthy=False, truth=True)
    m.crash(i=1)
    m.crash(i=2)
    m.drive(fail=True, i=0, restart=False)
    m.serve(delay=True, drop=False, i=0)
    m.deliver_watch(i=0)
    m.teardown()  # asserts that the one eligible site runs the copy


def test_a_holder_whose_lease_key_vanished_while_it_was_cut_off_takes_it_again() -> None:
    """Found by the machine above (2 sites): the holder is cut off with a renewal
    unconfirmed, fences, the lease expires and its marker ages out, the other site shuts
    down. After the heal the renewal is refused and the read finds no key at all: a
    refusal with a read "not newer than ours" counted as not-yet-known, so the holder waited
    for ever with its workload down. An absent key proves the lease lost."""
    m = AbsoluteConsistencyMachine()
    p = Params(
        lease_ttl=8.9161671875309,
        renew_interval=1.5390115592968716,
        fence_margin=1.2211093910465425,
        stop_grace=0.8793420696498084,
        heartbeat_interval=0.1,
        rank_delay=0.8755290844200396,
        failed_cooldown=0.0,
        sync_grace=2.0,
    )
    m.setup(n=2, warm=False, timing=(p, 0.0, 0.3847528898242179))
    m.cut(connected=False, i=0)
    m.advance(dt=0.5, healthy=False, truth=True)
    for dt in (1.9392617512433978, 1.4361929783983285, 0.5531225183332988):
        m.advance(dt=dt, healthy=False, truth=False)
    m.cut(connected=False, i=1)
    m.shutdown(i=0)
    m.advance(dt=3.0, healthy=False, truth=False)
    m.advance(dt=1.8270589460787674, healthy=False, truth=False)
    m.drop_marker()
    m.teardown()  # asserts that the one eligible site (s1) runs the copy
