"""SplitBrainAllowed, scenario by scenario (sync_grace 2 s, failed_cooldown 10 s)."""

from __future__ import annotations

import pytest
from support.strategy_site import Site, actions, kinds

from harmony.strategies import Params
from harmony.strategies.commands import RecordDivergence, StartCopy, StopCopy
from harmony.strategies.events import (
    Copy,
    LeaseObservedGone,
    PartitionHealed,
    PeerAlive,
    PeerCopiesSeen,
    PeerSilent,
    PeerSuspect,
    ShutdownRequested,
    WorkloadExited,
    WorkloadStarted,
    WorkloadStopped,
)
from harmony.strategies.split_brain import SplitBrainAllowed

SBA = SplitBrainAllowed()


def running(site: str, at: float, strategy: SplitBrainAllowed = SBA, *peers_silent: str) -> Site:
    s = Site(strategy, site, now=at)
    s.feed_all(PeerSilent(p) for p in peers_silent)
    s.feed(PeerCopiesSeen(()))
    assert kinds(s.log) == ["StartCopy"]
    s.feed(WorkloadStarted())
    return s


def test_primary_starts_once_it_has_seen_the_copies_of_the_mesh() -> None:
    s = Site(SBA, "a")
    assert s.log == [] and s.decision.wake_at == 2.0
    cmds = actions(s.feed(PeerCopiesSeen(()), at=0.3))
    assert len(cmds) == 1 and isinstance(cmds[0], StartCopy) and cmds[0].token is None


def test_primary_starts_after_sync_grace_without_any_view() -> None:
    s = Site(SBA, "a")
    assert kinds(s.advance(1.99)) == []
    assert kinds(s.advance(2.0)) == ["StartCopy"]


def test_primary_that_boots_while_a_replacement_runs_does_not_start() -> None:
    s = Site(SBA, "a")
    s.feed(PeerAlive("b"))
    s.feed(PeerCopiesSeen((Copy("b", 5.0),)), at=0.5)
    assert kinds(s.advance(100.0)) == []


@pytest.mark.parametrize(
    ("site", "events", "starts"),
    [
        ("b", [PeerAlive("a")], False),
        ("b", [PeerSuspect("a")], False),  # never act on suspicion
        ("b", [PeerSilent("a")], True),  # the first live standby starts at once
        ("c", [PeerSilent("a")], False),  # b is not known silent
        ("c", [PeerSilent("a"), PeerAlive("b")], False),
        ("c", [PeerSilent("a"), PeerSilent("b")], True),
    ],
)
def test_the_first_live_site_in_topology_order_runs_it(
    site: str, events: list, starts: bool
) -> None:
    s = Site(SBA, site)
    s.feed(PeerCopiesSeen((Copy("a", 0.0),)), at=0.1)
    s.feed_all(events)
    assert kinds(s.log) == (["StartCopy"] if starts else [])
    assert s.decision.wake_at is None  # nothing to wait for either way


@pytest.mark.parametrize(
    ("policy", "loser", "winner"),
    [
        ("keep-original", "b", "a"),  # a started first (at 0), b replaced it at 10
        ("keep-replacement", "a", "b"),
        ("best-score", "a", "b"),  # b's score 5 beats a's 1
    ],
)
def test_on_heal_the_policy_stops_exactly_the_loser(policy: str, loser: str, winner: str) -> None:
    strategy = SplitBrainAllowed(Params(reconcile=policy))
    copies = (Copy("a", 0.0, score=1.0), Copy("b", 10.0, score=5.0))
    a = running("a", 0.0, strategy)
    b = running("b", 10.0, strategy, "a")
    for s in (a, b):
        s.feed(PeerAlive("b" if s is a else "a"), at=20.0)
        s.feed(PartitionHealed(("a", "b")))
        s.feed(PeerCopiesSeen(copies))
    lost, won = (a, b) if loser == "a" else (b, a)
    assert kinds(won.log[2:]) == []
    assert kinds(lost.log[2:]) == ["StopCopy"]
    div = [c for c in lost.log if isinstance(c, RecordDivergence)]
    assert len(div) == 1 and div[0].winner.site == winner and div[0].policy == policy
    assert [c.site for c in div[0].losers] == [loser]
    stop = next(c for c in lost.log if isinstance(c, StopCopy))
    assert f"{winner} survives" in stop.reason


def test_a_loser_does_not_restart_while_the_winner_runs_even_as_primary() -> None:
    strategy = SplitBrainAllowed(Params(reconcile="keep-replacement"))
    a = running("a", 0.0, strategy)
    a.feed(PeerAlive("b"), at=20.0)
    a.feed(PeerCopiesSeen((Copy("a", 0.0), Copy("b", 10.0))))
    a.feed(WorkloadStopped(), at=21.0)
    a.feed(PeerCopiesSeen((Copy("b", 10.0),)))
    assert kinds(a.advance(100.0)) == []
    assert kinds(a.feed(PeerSilent("b"), at=101.0)) == ["StartCopy"]  # winner gone


def test_a_copy_seen_only_on_a_silent_site_does_not_count() -> None:
    s = Site(SBA, "b")
    s.feed(PeerCopiesSeen((Copy("a", 0.0),)), at=0.1)
    assert kinds(s.feed(PeerSilent("a"), at=3.0)) == ["StartCopy"]


def test_shutdown_stops_the_copy_and_finishes() -> None:
    s = running("a", 0.0)
    assert kinds(s.feed(ShutdownRequested(), at=1.0)) == ["StopCopy"]
    s.feed(WorkloadStopped(), at=1.5)
    assert s.state.done and s.decision.wake_at is None
    assert s.feed(PeerSilent("b")) == []


def test_a_failed_copy_is_restarted_after_the_cooldown() -> None:
    s = running("a", 0.0)
    assert kinds(s.feed(WorkloadExited(code=2), at=1.0)) == []
    assert s.decision.wake_at == 11.0
    assert kinds(s.advance(11.0)) == ["StartCopy"]


def test_lease_events_are_ignored() -> None:
    s = running("a", 0.0)
    assert kinds(s.feed(LeaseObservedGone(3), at=1.0)) == []
