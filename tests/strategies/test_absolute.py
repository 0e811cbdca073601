"""AbsoluteConsistency, scenario by scenario.

Defaults: ttl 8, renew 1, margin 2.5, so the holder fences at t0 + 5.5.
"""

from __future__ import annotations

import pytest
from support.strategy_site import Site, actions, kinds

from harmony.strategies import FailoverTopology, Params
from harmony.strategies.absolute import AbsoluteConsistency
from harmony.strategies.commands import (
    AcquireLease,
    FenceCopy,
    Promote,
    RecordEvent,
    ReleaseLease,
    RenewLease,
    StartCopy,
    StopCopy,
)
from harmony.strategies.events import (
    AcquireFailed,
    LeaseAcquired,
    LeaseActorRestarted,
    LeaseLost,
    LeaseObservedGone,
    LeaseObservedHeld,
    LeaseRead,
    LeaseReleased,
    LeaseRenewed,
    PeerAlive,
    PeerSilent,
    PeerSuspect,
    ReleaseFailed,
    RenewFailed,
    RenewRefused,
    ShutdownRequested,
    Tick,
    WorkloadExited,
    WorkloadFenced,
    WorkloadStarted,
    WorkloadStopped,
    WorkloadUnknown,
)

AC = AbsoluteConsistency()


def holder(
    site: str = "a", t0: float = 1.0, token: int = 5, strategy: AbsoluteConsistency = AC
) -> Site:
    """A site that saw the lease gone at t0, took it with `token` and runs the active copy."""
    s = Site(strategy, site)
    if site != "a":
        s.feed(PeerSilent("a"), at=t0)
    s.feed(LeaseObservedGone(None), at=t0)
    assert kinds(s.decision.commands) == ["AcquireLease"]
    assert kinds(s.feed(LeaseAcquired(token, sent_at=t0), at=t0 + 0.01)) == ["StartCopy"]
    s.feed(WorkloadStarted(), at=t0 + 0.1)
    return s


def test_boot_watches_the_lease_and_fences_what_an_earlier_incarnation_left() -> None:
    s = Site(AC, "a", boot_fenced=False)
    assert kinds(s.boot) == ["WatchLease", "FenceCopy"]
    assert s.state.driver.unknown
    # Until the fence is confirmed the site takes no part in an election.
    assert kinds(s.feed(LeaseObservedGone(None), at=1.0)) == []
    assert kinds(s.feed(WorkloadFenced(), at=1.5)) == ["AcquireLease"]
    assert not s.state.driver.unknown and s.state.cooldown_until == 0.0  # not a copy failure


def test_boot_only_watches_the_lease_once_the_boot_fence_is_confirmed() -> None:
    s = Site(AC, "a")
    assert kinds(s.log) == ["WatchLease", "FenceCopy"]
    assert s.decision.wake_at is None
    assert actions(s.advance(100.0)) == []


def test_primary_takes_a_gone_lease_at_once_and_starts_with_the_token() -> None:
    s = Site(AC, "a")
    assert actions(s.feed(LeaseObservedGone(17), at=1.0)) == [AcquireLease(17, s.log[-1].reason)]
    cmds = actions(s.feed(LeaseAcquired(18, sent_at=1.0), at=1.2))
    assert len(cmds) == 1 and isinstance(cmds[0], StartCopy) and cmds[0].token == 18
    assert s.decision.wake_at == 2.0  # first renewal, renew_interval after the send


@pytest.mark.parametrize(
    ("site", "peers", "tries_at"),
    [
        ("b", [PeerAlive("a")], 2.0),  # primary alive: wait one rank
        ("b", [PeerSuspect("a")], 2.0),  # suspicion is not silence
        ("b", [PeerSilent("a")], 1.0),  # primary silent: first standby goes first
        ("c", [PeerSilent("a"), PeerAlive("b")], 2.0),  # b alive: c waits one rank
        ("c", [PeerSilent("a"), PeerSilent("b")], 1.0),
        ("c", [PeerAlive("a"), PeerAlive("b")], 3.0),
    ],
)
def test_standbys_defer_by_rank_among_live_sites(site: str, peers: list, tries_at: float) -> None:
    s = Site(AC, site)
    s.feed_all(peers)
    s.feed(LeaseObservedGone(None), at=1.0)
    s.advance(10.0)
    assert s.times_of(AcquireLease)[0] == tries_at  # (later ones: retries, unanswered)


@pytest.mark.parametrize(
    ("site", "peers"),
    [("b", []), ("c", [PeerSilent("a")]), ("c", [PeerAlive("a")])],
)
def test_a_standby_never_races_a_site_ahead_it_has_not_heard_of(site: str, peers: list) -> None:
    """A site ahead that was never heard of may be booting: no try until it is heard of."""
    s = Site(AC, site)
    s.feed_all(peers)
    s.feed(LeaseObservedGone(None), at=1.0)
    s.advance(30.0)
    assert s.times_of(AcquireLease) == []


def test_a_primary_heard_late_gets_its_head_start() -> None:
    """The rank delay runs from when the primary was heard, not from the lease seen gone: a
    standby that booted first does not take the lease from a primary still starting."""
    s = Site(AC, "b")
    s.feed(LeaseObservedGone(None), at=1.0)
    s.feed(PeerAlive("a"), at=5.0)
    s.advance(10.0)
    assert s.times_of(AcquireLease)[0] == 6.0


def test_a_primary_never_heard_and_then_silent_no_longer_holds_the_standby() -> None:
    s = Site(AC, "b")
    s.feed(LeaseObservedGone(None), at=1.0)
    s.feed(PeerSilent("a"), at=5.0)
    s.advance(10.0)
    assert s.times_of(AcquireLease)[0] == 5.0


def test_silence_alone_never_starts_anything() -> None:
    s = Site(AC, "b")
    s.feed(LeaseObservedHeld("a", 4), at=0.5)
    s.feed(PeerSilent("a"), at=1.0)
    assert set(kinds(s.advance(1000.0))) == {"WatchLease"}  # re-reads, nothing else
    assert all(not isinstance(c, StartCopy | AcquireLease) for c in s.log)


def test_a_lease_not_renewed_for_a_whole_ttl_is_read_again() -> None:
    """Without limit markers nobody is told a key expired: re-read instead of waiting forever."""
    s = Site(AC, "b")
    s.feed(LeaseObservedHeld("a", 4), at=0.5)
    s.feed(LeaseObservedHeld("a", 6), at=1.5)  # renewals keep it fresh
    assert s.decision.wake_at == 1.5 + AC.params.lease_ttl
    assert kinds(s.advance(9.5)) == ["WatchLease"]
    assert s.decision.wake_at == 9.5 + AC.params.lease_ttl  # at most once per TTL


def test_holder_renews_every_interval_from_the_send_time() -> None:
    s = holder()
    renews = []
    for rev, t in ((7, 2.0), (9, 3.0), (11, 4.0)):
        cmds = s.advance(t)
        renews += [c for c in cmds if isinstance(c, RenewLease)]
        s.feed(LeaseRenewed(rev, sent_at=t), at=t + 0.05)
    assert [r.revision for r in renews] == [5, 7, 9]
    assert s.state.lease.t0 == 4.0 and s.state.lease.token == 5


def test_holder_that_cannot_renew_fences_exactly_at_t0_plus_ttl_minus_margin() -> None:
    s = holder(t0=1.0)
    attempts = 0
    while s.now < 6.5 - 1e-9:
        cmds = s.advance(min(s.decision.wake_at or 6.5, 6.5 - 1e-9))
        assert not any(isinstance(c, FenceCopy) for c in cmds)
        for c in cmds:
            if isinstance(c, RenewLease):
                attempts += 1
                s.feed(RenewFailed("timeout"))
        if s.decision.wake_at is not None and s.decision.wake_at >= 6.5:
            break
    assert attempts == 5  # at 2, 3, 4, 5 and 6: several tries before the deadline
    assert s.decision.wake_at == 6.5
    fence = [c for c in s.advance(6.5) if isinstance(c, FenceCopy)]
    assert len(fence) == 1 and "no renewal since t0=1.000" in fence[0].reason
    assert not s.state.lease.valid(6.5, AC.params.fence_offset)


def test_a_late_successful_renewal_restarts_here_without_failover() -> None:
    s = holder(t0=1.0)
    for t in (2.0, 3.0, 4.0, 5.0):
        s.advance(t)
        s.feed(RenewFailed("timeout"))
    s.advance(6.0)  # renewal sent at 6.0, answered after the fence deadline 6.5
    assert kinds(s.advance(6.5)) == ["FenceCopy"]
    assert kinds(s.feed(LeaseRenewed(9, sent_at=6.0), at=6.6)) == []  # still fencing
    cmds = actions(s.feed(WorkloadFenced(), at=6.9))
    assert len(cmds) == 1 and isinstance(cmds[0], StartCopy)
    # A new copy after a fence gets the renewal's revision: no earlier copy had that token.
    assert cmds[0].token == 9


def test_a_renewal_answered_after_our_last_write_may_have_expired_is_not_run_on() -> None:
    """t0 = 1.0: our write expires no earlier than t0 + fence_offset + stop_grace = 8.0 on
    any server clock (the safety inequality). A renewal answered later may have landed on
    an expired message, whose expiry marker nats-server can place after it (seen in CI):
    the key would be gone and a standby would start beside our new copy. So it is let go,
    the copy stays down, and the rank order decides once the key is gone."""
    s = holder(t0=1.0)
    for t in (2.0, 3.0, 4.0, 5.0, 6.0):
        s.advance(t)
        s.feed(RenewFailed("timeout"))
    assert kinds(s.advance(6.5)) == ["FenceCopy"]
    s.feed(WorkloadFenced(), at=6.9)
    s.advance(7.0)  # a renewal sent at 7.0, answered at 8.0: the bound
    cmds = s.feed(LeaseRenewed(9, sent_at=7.0), at=8.0)
    assert not [c for c in actions(cmds) if isinstance(c, StartCopy)]
    assert "lease-lost" in [c.kind for c in cmds if isinstance(c, RecordEvent)]
    lease = s.state.lease
    assert lease.revision is None and (lease.seen_holder, lease.seen_revision) == ("a", 9)
    assert not [c for c in actions(s.advance(9.0)) if isinstance(c, (StartCopy, RenewLease))]
    # the key is gone (expired, or rolled up by that marker): we are the primary, so we
    # try again, by CAS over the marker, and start only on a lease taken in time
    assert kinds(s.feed(LeaseObservedGone(10), at=9.5)) == ["AcquireLease"]
    cmds = actions(s.feed(LeaseAcquired(11, sent_at=9.5), at=9.6))
    assert len(cmds) == 1 and isinstance(cmds[0], StartCopy) and cmds[0].token == 11


def test_our_timed_out_renewal_found_too_late_is_not_run_on() -> None:
    """The same for a timed-out renewal adopted from a read: found at 8.0, after our last
    confirmed write (t0 = 1.0) may have expired."""
    s = holder(t0=1.0, token=5)
    s.advance(2.0)
    s.feed(RenewFailed("timeout", sent_at=2.0), at=3.0)
    for t in (3.0, 4.0, 5.0, 6.0):
        s.advance(t)
        s.feed(RenewRefused(5, "wrong last sequence", LeaseRead(5, "a", ours=True)))
    assert kinds(s.advance(6.5)) == ["FenceCopy"]
    s.feed(WorkloadFenced(), at=6.9)
    s.advance(7.0)
    read = LeaseRead(6, "a", ours=True)
    cmds = s.feed(RenewRefused(5, "wrong last sequence", read), at=8.0)
    assert not [c for c in actions(cmds) if isinstance(c, StartCopy)]
    assert s.state.lease.revision is None


def test_lease_lost_fences_at_once_and_rereads_the_lease() -> None:
    s = holder()
    cmds = s.feed(LeaseLost("wrong last sequence"), at=2.5)
    assert kinds(cmds) == ["FenceCopy", "WatchLease"]
    assert s.state.lease.revision is None


def test_lease_seen_held_by_another_site_at_a_newer_revision_fences() -> None:
    s = holder(token=5)
    assert kinds(s.feed(LeaseObservedHeld("a", 6), at=1.5)) == []  # our own echo
    assert kinds(s.feed(LeaseObservedHeld("b", 4), at=1.6)) == []  # older: stale read
    assert kinds(s.feed(LeaseObservedHeld("b", 9), at=1.7)) == ["FenceCopy"]


def test_lease_seen_gone_after_our_revision_fences_but_a_stale_absent_read_does_not() -> None:
    s = holder(token=5)
    assert kinds(s.feed(LeaseObservedGone(None), at=1.5)) == []
    assert kinds(s.feed(LeaseObservedGone(3), at=1.6)) == []
    # fence the copy; the lease is free and we are the primary: take it again (CAS decides)
    assert kinds(s.feed(LeaseObservedGone(8), at=1.7)) == ["FenceCopy", "AcquireLease"]


def test_graceful_shutdown_stops_then_releases_while_still_renewing() -> None:
    s = holder()
    assert kinds(s.feed(ShutdownRequested(), at=1.5)) == ["StopCopy"]
    assert kinds(s.advance(2.0)) == ["RenewLease"]  # a slow stop keeps the lease alive
    s.feed(LeaseRenewed(6, sent_at=2.0))
    cmds = s.feed(WorkloadStopped(), at=2.5)
    assert cmds and isinstance(actions(cmds)[0], ReleaseLease) and actions(cmds)[0].revision == 6
    cmds = s.feed(LeaseReleased(), at=2.6)
    assert s.state.done and any(
        isinstance(c, RecordEvent) and c.kind == "shutdown-complete" for c in cmds
    )
    assert s.feed(LeaseObservedGone(7), at=3.0) == [] and s.decision.wake_at is None


def test_shutdown_without_the_lease_is_done_at_once() -> None:
    s = Site(AC, "b")
    s.feed(ShutdownRequested(), at=1.0)
    assert s.state.done
    assert s.feed(LeaseObservedGone(None), at=2.0) == []


def test_a_copy_that_fails_for_good_hands_the_lease_over_and_cools_down() -> None:
    s = holder(t0=1.0)
    cmds = s.feed(WorkloadExited(code=3, restarting=False), at=2.2)
    assert kinds(cmds) == ["ReleaseLease"]
    s.feed(LeaseReleased(), at=2.3)
    s.feed(LeaseObservedGone(9), at=2.4)
    s.advance(20.0)
    retried = [t for t in s.times_of(AcquireLease) if t > 1.0]
    assert retried[0] == 2.2 + AC.params.failed_cooldown


def test_a_copy_the_driver_restarts_keeps_the_lease() -> None:
    s = holder()
    assert kinds(s.feed(WorkloadExited(code=1, restarting=True), at=1.5)) == []
    assert kinds(s.advance(2.0)) == ["RenewLease"]


def test_no_failback_by_default_the_standby_keeps_the_lease() -> None:
    s = holder("b", t0=1.0)
    s.feed(PeerAlive("a"), at=2.0)
    rev = 5
    for t in range(2, 200):
        for c in s.advance(float(t)):
            assert not isinstance(c, StopCopy | ReleaseLease | FenceCopy)
            if isinstance(c, RenewLease):
                rev += 2
                s.feed(LeaseRenewed(rev, sent_at=float(t)))
    assert s.state.driver.active


def test_failback_option_hands_the_lease_back_once_the_primary_stayed_alive() -> None:
    fb = AbsoluteConsistency(Params(failback=True, failback_after=5.0))
    s = holder("b", t0=1.0, strategy=fb)
    s.feed(PeerAlive("a"), at=1.5)
    rev = 5
    stop_at = None
    for t in (2.0, 3.0, 4.0, 5.0, 6.0, 6.5, 7.0):
        for c in s.advance(t):
            if isinstance(c, RenewLease):
                rev += 2
                s.feed(LeaseRenewed(rev, sent_at=t))
            if isinstance(c, StopCopy):
                stop_at = s.now
    assert stop_at == 6.5  # alive since 1.5, failback_after 5
    assert kinds(s.feed(WorkloadStopped(), at=7.1)) == ["ReleaseLease"]
    s.feed(LeaseReleased(), at=7.2)
    s.feed(LeaseObservedGone(rev + 1), at=7.3)
    assert [c for c in s.advance(7.3 + 2.0) if isinstance(c, AcquireLease)] == []  # a goes first


def test_warm_standby_runs_a_passive_copy_and_is_promoted_with_the_token() -> None:
    topo = FailoverTopology.of("a", "b", warm=True)
    s = Site(AC, "b", topo)
    s.feed(LeaseObservedHeld("a", 3), at=0.1)
    start = [c for c in s.log if isinstance(c, StartCopy)]
    assert len(start) == 1 and start[0].passive and start[0].token is None
    s.feed(WorkloadStarted(), at=0.5)
    s.feed(PeerSilent("a"), at=1.0)
    assert kinds(s.feed(LeaseObservedGone(6), at=9.0)) == ["AcquireLease"]
    cmds = actions(s.feed(LeaseAcquired(7, sent_at=9.0), at=9.1))
    assert cmds == [Promote(7, cmds[0].reason)] if cmds else False
    s.feed(LeaseLost("moved"), at=10.0)
    assert isinstance(actions(s.log)[-2], FenceCopy)
    cmds = actions(s.feed(WorkloadFenced(), at=10.5))
    assert len(cmds) == 1 and isinstance(cmds[0], StartCopy) and cmds[0].passive


def test_repeated_ticks_and_duplicate_events_send_nothing_twice() -> None:
    s = holder()
    assert actions(s.feed(Tick(), at=1.5)) == []
    assert actions(s.feed(Tick(), at=1.5)) == []
    assert actions(s.feed(WorkloadStarted(), at=1.5)) == []
    assert actions(s.feed(LeaseObservedGone(None), at=1.5)) == []


def test_a_refused_acquire_rereads_the_lease_before_trying_again() -> None:
    s = Site(AC, "a")
    s.feed(LeaseObservedGone(4), at=1.0)
    assert kinds(s.feed(AcquireFailed("wrong last sequence", conflict=True), at=1.1)) == [
        "WatchLease"
    ]
    assert [c for c in s.advance(50.0) if isinstance(c, AcquireLease)] == []
    assert kinds(s.feed(LeaseObservedGone(None), at=50.0)) == ["AcquireLease"]
    assert s.state.lease.seen_revision is None  # create, not update on the stale marker


def test_an_unanswered_request_is_given_up_after_renew_interval() -> None:
    s = holder(t0=1.0)
    assert kinds(s.advance(2.0)) == ["RenewLease"]
    cmds = s.advance(3.0)  # no answer to the 2.0 renewal
    assert kinds(cmds) == ["RenewLease"]
    assert any(isinstance(c, RecordEvent) and c.kind == "lease-timeout" for c in cmds)


def test_stale_answers_never_extend_the_lease() -> None:
    s = holder(t0=1.0, token=5)
    s.advance(2.0)
    s.feed(LeaseRenewed(7, sent_at=2.0), at=2.1)
    s.feed(LeaseRenewed(6, sent_at=5.0), at=2.2)  # older revision: ignored
    s.feed(LeaseAcquired(20, sent_at=5.0), at=2.3)  # not asked for while holding: ignored
    assert (s.state.lease.revision, s.state.lease.t0, s.state.lease.token) == (7, 2.0, 5)


def test_every_wake_at_is_in_the_future() -> None:
    s = holder()
    for t in (1.5, 2.0, 2.0, 3.3):
        s.feed(Tick(), at=t)
        assert s.decision.wake_at is None or s.decision.wake_at > s.now


def test_a_handover_ends_when_the_lease_is_lost_instead_of_released() -> None:
    """Found by the state machine: a lost lease used to leave the site 'handing over' forever."""
    s = holder(t0=1.0, token=5)
    s.feed(PeerSilent("b"), at=1.1)
    s.feed(PeerSilent("c"), at=1.1)
    assert kinds(s.feed(WorkloadExited(code=1), at=1.2)) == ["ReleaseLease"]
    s.feed(ReleaseFailed("timeout"), at=1.3)
    s.feed(LeaseLost("wrong last sequence"), at=1.4)
    assert not s.state.handing_over
    s.feed(LeaseObservedGone(9), at=1.5)
    s.advance(30.0)
    assert s.times_of(AcquireLease)[1] == 1.2 + AC.params.failed_cooldown


# -- refusals: the core decides whether a refused renewal means lost ---------------------------


def test_a_refusal_with_nothing_unconfirmed_means_lost() -> None:
    s = holder(t0=1.0, token=5)
    s.advance(2.0)
    read = LeaseRead(9, "b", ours=False)
    assert kinds(s.feed(RenewRefused(5, "wrong last sequence", read), at=2.1)) == ["FenceCopy"]
    assert s.state.lease.revision is None and s.state.lease.seen_holder == "b"


def test_a_refusal_caused_by_our_own_timed_out_renewal_is_adopted() -> None:
    """The 2.0 renewal timed out but landed (rev 6); the 3.0 one (last=5) is refused. The
    read shows our own value at 6: that is a renewal, with t0 = the send time of the one
    that timed out (never later than the write)."""
    s = holder(t0=1.0, token=5)
    s.advance(2.0)
    s.feed(RenewFailed("timeout", sent_at=2.0), at=2.6)
    assert s.state.lease.unconfirmed_since == 2.0
    s.advance(3.0)
    cmds = s.feed(RenewRefused(5, "wrong last sequence", LeaseRead(6, "a", ours=True)), at=3.1)
    assert kinds(cmds) == []
    lease = s.state.lease
    assert (lease.revision, lease.t0, lease.token, lease.unconfirmed_since) == (6, 2.0, 5, None)
    assert "renew-adopted" in [c.kind for c in cmds if isinstance(c, RecordEvent)]


def test_a_refusal_after_a_timeout_is_lost_only_when_the_read_shows_someone_else() -> None:
    s = holder(t0=1.0, token=5)
    s.advance(2.0)
    s.feed(RenewFailed("timeout", sent_at=2.0), at=2.6)
    s.advance(3.0)
    # Unreadable, or not newer than ours yet: we do not know. Keep the deadline, no fence.
    assert kinds(s.feed(RenewRefused(5, "refused", None), at=3.1)) == []
    assert kinds(s.feed(RenewRefused(5, "refused", LeaseRead(5, "a", ours=True)), at=3.2)) == []
    assert s.state.lease.revision == 5
    # Another site's (or another incarnation's) value past ours: lost.
    lost = s.feed(RenewRefused(5, "refused", LeaseRead(8, "a", ours=False)), at=3.3)
    assert kinds(lost) == ["FenceCopy"] and s.state.lease.revision is None


def test_a_stale_queued_renewal_refused_after_a_newer_one_succeeded_is_ignored() -> None:
    s = holder(t0=1.0, token=5)
    s.advance(2.0)
    s.feed(LeaseRenewed(6, sent_at=2.0), at=2.1)
    cmds = s.feed(RenewRefused(5, "wrong last sequence", LeaseRead(6, "a", ours=True)), at=2.2)
    assert kinds(cmds) == [] and s.state.lease.revision == 6


def test_a_restarted_lease_actor_fails_its_pending_request_as_unconfirmed() -> None:
    s = holder(t0=1.0, token=5)
    assert kinds(s.advance(2.0)) == ["RenewLease"]
    s.feed(LeaseActorRestarted(), at=2.3)
    assert s.state.lease.pending is None and s.state.lease.unconfirmed_since == 2.0


# -- copies in an unknown state ------------------------------------------------------------------


def renewing(s: Site, until: float) -> list[str]:
    """Advance to `until`, every renewal answered at once; the kinds of what was sent."""
    sent: list[str] = []
    while s.decision.wake_at is not None and s.decision.wake_at <= until:
        cmds = s.feed(Tick(), at=s.decision.wake_at)
        sent += kinds(cmds)
        for c in cmds:
            if isinstance(c, RenewLease):
                rev = (s.state.lease.revision or 0) + 1
                sent += kinds(s.feed(LeaseRenewed(rev, sent_at=s.now)))
    s.now = max(s.now, until)
    return sent


def test_a_failed_probe_on_the_holder_fences_and_hands_over_only_when_confirmed() -> None:
    s = holder(t0=1.0, token=5)
    assert kinds(s.feed(WorkloadUnknown("probe failed"), at=1.5)) == ["FenceCopy"]
    assert s.state.lease.revision == 5  # kept while the copy may run
    sent = renewing(s, 4.0)
    assert "RenewLease" in sent and "ReleaseLease" not in sent
    cmds = s.feed(WorkloadFenced(), at=4.1)
    assert kinds(cmds) == ["ReleaseLease"]  # confirmed down: the copy failed, hand over
    assert s.state.cooldown_until > 4.1


def test_a_probe_that_recovers_while_the_lease_is_held_means_running_again() -> None:
    s = holder(t0=1.0, token=5)
    s.feed(WorkloadUnknown("probe failed"), at=1.2)
    s.feed(WorkloadUnknown("fence hook exited with code 1"), at=1.3)  # retry after backoff
    cmds = s.feed(WorkloadStarted(), at=1.4)  # the probe recovered
    assert kinds(cmds) == [] and not s.state.driver.unknown and s.state.driver.active
    assert "copy-recovered" in [c.kind for c in cmds if isinstance(c, RecordEvent)]
    assert "FenceCopy" not in kinds(s.advance(3.0))  # the holder's copy: nothing to do


def test_a_probe_that_recovers_after_the_lease_was_lost_is_fenced() -> None:
    s = holder(t0=1.0, token=5)
    s.feed(WorkloadUnknown("probe failed"), at=1.2)
    s.feed(WorkloadUnknown("fence hook exited with code 1"), at=1.3)
    s.feed(LeaseLost("wrong last sequence"), at=1.35)
    assert kinds(s.feed(WorkloadStarted(), at=1.4)) == ["FenceCopy"]


def test_shutdown_with_a_copy_in_an_unknown_state_never_releases_nor_completes() -> None:
    s = holder(t0=1.0, token=5)
    s.feed(ShutdownRequested(), at=1.1)  # -> StopCopy
    assert kinds(s.feed(WorkloadUnknown("stop hook timed out"), at=1.5)) == ["FenceCopy"]
    s.feed(WorkloadUnknown("fence hook timed out"), at=2.5)
    sent = renewing(s, 5.0)
    assert "FenceCopy" in sent and "ReleaseLease" not in sent  # retried, lease kept
    assert not s.state.done
    assert kinds(s.feed(WorkloadFenced(), at=5.1)) == ["ReleaseLease"]
    s.feed(LeaseReleased(), at=5.2)
    assert s.state.done
