"""PeerWatch with a test clock: alive / suspect / silent, restarts, and the detection bound."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pykka
import pytest
from support.actors import Kit, make_kit
from support.waiting import wait_until

from harmony.actors.messages import Heartbeat
from harmony.actors.peers import (
    TICKS_PER_INTERVAL,
    CheckPeers,
    HeartbeatSeen,
    PeerChanged,
    PeerWatch,
    classify,
)
from harmony.config import FailoverTopologyConfig, ProcessDriverConfig, Timings, WorkloadConfig

IV = 0.5


class Recorder(pykka.ThreadingActor):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[PeerChanged] = []

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, PeerChanged):
            self.seen.append(message)
        return list(self.seen)


@pytest.fixture
def kit() -> Iterator[Kit]:
    # Timers must not fire on their own: the test drives CheckPeers itself.
    k = make_kit(timings=Timings(heartbeat_interval=IV, suspect_after=1.5, silent_after=2.5))
    k.ctx.scheduler.stop()
    # Peers are the sites of this site's workloads' topologies: b, and not zz.
    w = WorkloadConfig(
        name="w",
        driver=ProcessDriverConfig(command=["true"]),
        topology=FailoverTopologyConfig(primary="a", standbys=["b"]),
    )
    k.ctx.config = msgspec.structs.replace(k.ctx.config, workloads=[w])
    yield k
    pykka.ActorRegistry.stop_all()


def hb(site: str, incarnation: str = "one") -> Heartbeat:
    return Heartbeat(
        mesh="m", site=site, seq=1, incarnation=incarnation, mono=0, wall=0, interval=IV
    )


def changes(rec: pykka.ActorRef[Any]) -> list[tuple[str, str, str, bool]]:
    return [(c.site, c.old, c.new, c.restarted) for c in rec.ask("list")]


def sync(ref: pykka.ActorRef[Any]) -> None:
    """Wait until the actor handled everything sent before (Pykka keeps order per sender)."""
    ref.ask(CheckPeers())


def test_classify_table() -> None:
    assert classify(0.0, IV, 1.5, 2.5) == "alive"
    assert classify(0.75, IV, 1.5, 2.5) == "alive"
    assert classify(0.76, IV, 1.5, 2.5) == "suspect"
    assert classify(1.25, IV, 1.5, 2.5) == "suspect"
    assert classify(1.26, IV, 1.5, 2.5) == "silent"


def test_transitions_and_detection_within_three_intervals(kit: Kit) -> None:
    rec = Recorder.start()
    watch = PeerWatch.start(kit.ctx, "agent/peers", rec)
    watch.tell(HeartbeatSeen(hb("b"), kit.clock.now))
    sync(watch)
    assert changes(rec) == [("b", "unknown", "alive", False)]
    last_heartbeat = kit.clock.now
    silent_at = None
    for _ in range(10 * TICKS_PER_INTERVAL):  # the real tick rate of PeerWatch
        kit.clock.now += IV / TICKS_PER_INTERVAL
        sync(watch)
        if changes(rec)[-1][2] == "silent":
            silent_at = kit.clock.now
            break
    assert [c[2] for c in changes(rec)] == ["alive", "suspect", "silent"]
    assert silent_at is not None and silent_at - last_heartbeat <= 3 * IV
    view = {p.site: p for p in kit.ctx.peer_view.read(kit.clock.now)}
    assert view["b"].state == "silent"
    # It comes back as the same agent, then as a new incarnation (restarted).
    watch.tell(HeartbeatSeen(hb("b"), kit.clock.now))
    sync(watch)
    watch.tell(HeartbeatSeen(hb("b", incarnation="two"), kit.clock.now))
    sync(watch)
    assert changes(rec)[-2:] == [("b", "silent", "alive", False), ("b", "alive", "alive", True)]


def test_expected_peer_never_heard_of_becomes_silent(kit: Kit) -> None:
    import msgspec

    from harmony.config import FailoverTopologyConfig, ProcessDriverConfig, WorkloadConfig

    w = WorkloadConfig(
        name="w",
        driver=ProcessDriverConfig(command=["true"]),
        topology=FailoverTopologyConfig(primary="a", standbys=["c"]),
    )
    kit.ctx.config = msgspec.structs.replace(kit.ctx.config, workloads=[w])
    rec = Recorder.start()
    watch = PeerWatch.start(kit.ctx, "agent/peers", rec)
    sync(watch)
    assert {p.site: p.state for p in kit.ctx.peer_view.read(kit.clock.now)} == {"c": "unknown"}
    kit.clock.now += 3 * IV  # overdue by heartbeats, but a starting agent gets a lease TTL
    sync(watch)
    assert changes(rec) == []
    kit.clock.now += kit.ctx.config.timings.lease_ttl
    sync(watch)
    wait_until(lambda: changes(rec) == [("c", "unknown", "silent", False)], 5)


def test_routine_heartbeats_are_batched_and_news_is_told_at_once(kit: Kit) -> None:
    """The loop thread wakes PeerWatch only for news; routine heartbeats are folded in at
    the next tick with their own arrival time, so liveness is judged exactly as before."""
    from types import SimpleNamespace

    from harmony.actors.messages import CopyInfo
    from harmony.mesh import wire

    class Watch(PeerWatch):
        instance: PeerWatch | None = None

        def started(self) -> None:
            super().started()
            Watch.instance = self

    rec = Recorder.start()
    watch = Watch.start(kit.ctx, "agent/peers", rec)
    sync(watch)
    actor = Watch.instance
    assert actor is not None

    def arrive(beat: Heartbeat) -> None:  # what the subscription callback gets
        subject = f"harmony.m.{beat.site}.hb"
        msg = SimpleNamespace(data=wire.encode(beat), subject=subject, headers=None, reply="")
        actor._on_msg(msg)

    arrive(hb("b"))  # first news: told at once
    sync(watch)
    assert changes(rec) == [("b", "unknown", "alive", False)]
    start = kit.clock.now
    kit.clock.now = start + 0.6
    arrive(hb("b"))  # routine: kept for the tick, not told
    assert set(actor._latest) == {"b"}
    kit.clock.now = start + 1.0  # 1.0 s after the first beat: suspect, unless the batch counts
    sync(watch)
    assert actor._latest == {}
    assert changes(rec) == [("b", "unknown", "alive", False)]
    view = {p.site: p for p in kit.ctx.peer_view.read(kit.clock.now)}
    assert view["b"].last_heartbeat_age == pytest.approx(0.4)

    copies = {"web": CopyInfo(started_wall=1.0, score=0.0, token=None)}
    news = Heartbeat(
        mesh="m", site="b", seq=2, incarnation="one", mono=0, wall=0, interval=IV, copies=copies
    )
    arrive(news)  # changed copies: told at once, and the workloads hear of them
    sync(watch)
    assert actor.peers["b"].copies == copies
