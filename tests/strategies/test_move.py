"""Operator moves: the target becomes preferred; AC hands the lease over, SBA keeps its copy."""

from __future__ import annotations

from harmony.strategies import Decision, FailoverStrategy, FailoverTopology, Params, strategy_for
from harmony.strategies.commands import (
    AcquireLease,
    FenceCopy,
    RecordDivergence,
    ReleaseLease,
    RenewLease,
    StartCopy,
    StopCopy,
)
from harmony.strategies.events import (
    Copy,
    LeaseAcquired,
    LeaseObservedGone,
    LeaseReleased,
    LeaseRenewed,
    MoveRequested,
    PeerCopiesSeen,
    Tick,
    WorkloadFenced,
    WorkloadStarted,
    WorkloadStopped,
    WorkloadUnknown,
)

TOPO = FailoverTopology.of("a", "b", "c")


def booted(strategy: FailoverStrategy, site: str) -> Decision:
    """A site whose boot fence (what an earlier incarnation left) was confirmed."""
    d = strategy.start(site, TOPO, 0.0)
    return strategy.step(d.state, WorkloadFenced(), 0.0)


def test_ac_holder_hands_over_and_the_target_goes_first() -> None:
    ac = strategy_for("absolute-consistency", Params())
    a = booted(ac, "a")
    a = ac.step(a.state, LeaseObservedGone(None), 0.1)
    a = ac.step(a.state, LeaseAcquired(5, 0.1), 0.2)
    a = ac.step(a.state, WorkloadStarted(), 0.3)
    a = ac.step(a.state, MoveRequested("c"), 1.0)
    assert any(isinstance(c, StopCopy) for c in a.commands)
    a = ac.step(a.state, WorkloadStopped(), 1.2)
    assert any(isinstance(c, ReleaseLease) and c.revision == 5 for c in a.commands)
    a = ac.step(a.state, LeaseReleased(), 1.3)
    assert a.state.lease.revision is None

    # b and c heard of the move too; c now ranks first, b defers by rank_delay.
    b = booted(ac, "b")
    c = booted(ac, "c")
    b = ac.step(b.state, MoveRequested("c"), 1.0)
    c = ac.step(c.state, MoveRequested("c"), 1.0)
    c = ac.step(c.state, LeaseObservedGone(6), 1.4)
    b = ac.step(b.state, LeaseObservedGone(6), 1.4)
    assert any(isinstance(x, AcquireLease) and x.expected_revision == 6 for x in c.commands)
    assert not any(isinstance(x, AcquireLease) for x in b.commands)
    c = ac.step(c.state, LeaseAcquired(7, 1.4), 1.5)
    assert any(isinstance(x, StartCopy) and x.token == 7 for x in c.commands)


def test_a_stop_hook_that_fails_during_a_move_keeps_the_lease_until_a_fence_confirms() -> None:
    """The stop's outcome is unknown: the copy may still run. Fence (with retries), keep
    renewing, and release only after a driver confirmed the copy down."""
    ac = strategy_for("absolute-consistency", Params())
    a = booted(ac, "a")
    a = ac.step(a.state, LeaseObservedGone(None), 0.1)
    a = ac.step(a.state, LeaseAcquired(5, 0.1), 0.2)
    a = ac.step(a.state, WorkloadStarted(), 0.3)
    a = ac.step(a.state, MoveRequested("c"), 1.0)
    assert any(isinstance(c, StopCopy) for c in a.commands)
    a = ac.step(a.state, WorkloadUnknown("stop hook exited with code 1"), 1.05)
    assert any(isinstance(c, FenceCopy) for c in a.commands)
    assert "fence-unconfirmed" in [getattr(c, "kind", "") for c in a.commands]
    a = ac.step(a.state, WorkloadUnknown("fence hook exited with code 1"), 1.08)
    assert a.wake_at is not None and a.wake_at > 1.08  # the retry waits out its backoff
    sent: list[object] = []
    revision = 5
    while sum(isinstance(c, FenceCopy) for c in sent) < 3:  # keeps fencing, with backoff
        assert a.wake_at is not None and a.wake_at < 30.0
        now = a.wake_at
        a = ac.step(a.state, Tick(), now)
        sent += a.commands
        for c in a.commands:
            if isinstance(c, RenewLease):  # the lease is kept meanwhile
                revision += 1
                a = ac.step(a.state, LeaseRenewed(revision, now), now)
            if isinstance(c, FenceCopy):
                a = ac.step(a.state, WorkloadUnknown("fence hook exited with code 1"), now)
    assert sum(isinstance(c, RenewLease) for c in sent) >= 2
    assert not any(isinstance(c, ReleaseLease) for c in sent)
    fences = [t for t in range(len(sent)) if isinstance(sent[t], FenceCopy)]
    assert len(fences) == 3
    a = ac.step(a.state, WorkloadFenced(), now + 0.1)
    assert any(isinstance(c, ReleaseLease) and c.revision == revision for c in a.commands)


def test_move_to_a_site_outside_the_topology_is_refused() -> None:
    ac = strategy_for("absolute-consistency", Params())
    d = ac.start("a", TOPO, 0.0)
    d = ac.step(d.state, MoveRequested("z"), 1.0)
    assert [getattr(c, "kind", "") for c in d.commands] == ["move-refused"]
    assert d.state.topology == TOPO


def test_sba_target_starts_and_its_copy_wins_the_reconcile() -> None:
    sba = strategy_for("split-brain-allowed", Params(reconcile="keep-original"))
    a = sba.start("a", TOPO, 0.0)
    a = sba.step(a.state, PeerCopiesSeen(()), 0.1)
    a = sba.step(a.state, WorkloadStarted(), 0.2)
    b = sba.start("b", TOPO, 0.0)
    b = sba.step(b.state, PeerCopiesSeen((Copy("a", 100.0),)), 0.1)
    b = sba.step(b.state, MoveRequested("b"), 1.0)
    assert any(isinstance(c, StartCopy) for c in b.commands)
    b = sba.step(b.state, WorkloadStarted(), 1.2)
    both = (Copy("a", 100.0), Copy("b", 200.0))
    a = sba.step(a.state, MoveRequested("b"), 1.0)
    a = sba.step(a.state, PeerCopiesSeen(both), 1.5)
    div = [c for c in a.commands if isinstance(c, RecordDivergence)]
    assert div and div[0].winner.site == "b"  # not keep-original's choice: the move's
    assert any(isinstance(c, StopCopy) for c in a.commands)
    b = sba.step(b.state, PeerCopiesSeen(both), 1.5)
    assert not any(isinstance(c, StopCopy) for c in b.commands)


def test_ac_move_back_to_a_site_that_just_handed_over_is_not_held_by_its_cooldown() -> None:
    ac = strategy_for("absolute-consistency", Params())
    a = ac.start("a", TOPO, 0.0)
    a = ac.step(a.state, LeaseObservedGone(None), 0.1)
    a = ac.step(a.state, LeaseAcquired(5, 0.1), 0.2)
    a = ac.step(a.state, WorkloadStarted(), 0.3)
    a = ac.step(a.state, MoveRequested("c"), 1.0)
    a = ac.step(a.state, WorkloadStopped(), 1.2)
    a = ac.step(a.state, LeaseReleased(), 1.3)
    assert a.state.cooldown_until > 1.3  # a handed over: it lets others go first
    a = ac.step(a.state, MoveRequested("a"), 1.5)
    a = ac.step(a.state, LeaseObservedGone(9), 1.6)
    assert any(isinstance(c, AcquireLease) for c in a.commands)
