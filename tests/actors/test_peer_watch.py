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


def advance(kit: Kit, watch: pykka.ActorRef[Any], seconds: float) -> None:
    """Let `seconds` pass as a running agent sees them: a check at every tick period (one
    jump would be a stall of this agent, which its peers are excused)."""
    step = IV / TICKS_PER_INTERVAL
    for _ in range(round(seconds / step)):
        kit.clock.now += step
        sync(watch)


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
    advance(kit, watch, 3 * IV)  # overdue by heartbeats, but a starting agent gets a lease TTL
    assert changes(rec) == []
    advance(kit, watch, kit.ctx.config.timings.lease_ttl)
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


def test_a_stopped_parent_does_not_kill_the_watch(kit: Kit) -> None:
    """At shutdown the agent supervisor stops before its children: a peer change told to it
    meanwhile is dropped, and PeerWatch goes on (it used to die with ActorDeadError)."""
    rec = Recorder.start()
    watch = PeerWatch.start(kit.ctx, "agent/peers", rec)
    rec.stop()
    watch.tell(HeartbeatSeen(hb("b"), kit.clock.now))
    sync(watch)  # raises ActorDeadError if the watch died handling the heartbeat
    assert watch.is_alive()
    assert {p.site: p.state for p in kit.ctx.peer_view.read(kit.clock.now)} == {"b": "alive"}
    assert kit.ctx.board.get("agent/peers").state != "failed"


def test_our_own_stall_is_not_held_against_peers(kit: Kit) -> None:
    """A check that runs long after the one before means this agent was starved: the peer's
    heartbeats may sit unread in our socket. Its silence counts from the end of the stall,
    and a peer that stays quiet is still found silent within the usual bound after it."""
    rec = Recorder.start()
    watch = PeerWatch.start(kit.ctx, "agent/peers", rec)
    watch.tell(HeartbeatSeen(hb("b"), kit.clock.now))
    advance(kit, watch, IV / TICKS_PER_INTERVAL)
    kit.clock.now += 4 * IV  # no tick for four heartbeat intervals
    sync(watch)
    assert changes(rec) == [("b", "unknown", "alive", False)]
    stall_end = kit.clock.now
    while changes(rec)[-1][2] != "silent":
        assert kit.clock.now - stall_end <= 3 * IV, changes(rec)
        advance(kit, watch, IV / TICKS_PER_INTERVAL)
    assert [c[2] for c in changes(rec)] == ["alive", "suspect", "silent"]
    assert kit.clock.now - stall_end > 2 * IV  # counted from the stall's end, not before it
    assert kit.ctx.board.get("agent/peers").detail["stalled"].endswith("s")


def test_a_heartbeat_after_a_stall_is_not_taken_for_an_old_one(kit: Kit) -> None:
    """The excuse is kept apart from the arrival time, so a heartbeat that arrived during
    the stall (a restart, in news) is still folded in."""
    rec = Recorder.start()
    watch = PeerWatch.start(kit.ctx, "agent/peers", rec)
    watch.tell(HeartbeatSeen(hb("b"), kit.clock.now))
    advance(kit, watch, IV / TICKS_PER_INTERVAL)
    arrived = kit.clock.now + IV
    kit.clock.now += 4 * IV
    sync(watch)
    watch.tell(HeartbeatSeen(hb("b", incarnation="two"), arrived))
    sync(watch)
    assert changes(rec)[-1] == ("b", "alive", "alive", True), changes(rec)


def test_on_a_loop_peers_are_judged_by_deadlines_not_by_ticks(kit: Kit) -> None:
    """With a mesh connection, PeerWatch is woken when a peer is overdue, not to look:
    heartbeats that come in time cost it no check at all, and a peer that falls quiet is
    found suspect and then silent on its deadlines (measured on the real clock)."""
    import asyncio
    import threading
    import time
    from types import SimpleNamespace

    from harmony.actors.clock import SystemClock
    from harmony.actors.timers import Scheduler
    from harmony.mesh import wire

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    callbacks: list[Any] = []

    def subscribe(subject: str, cb: Any) -> Any:
        callbacks.append(cb)
        return SimpleNamespace(unsubscribe=lambda: None)

    kit.ctx.bridge = SimpleNamespace(  # type: ignore[assignment]
        conn=SimpleNamespace(loop=loop, subscribe=subscribe), stats=None
    )
    kit.ctx.clock = SystemClock()
    kit.ctx.scheduler = Scheduler(time.monotonic)
    checks: list[float | None] = []

    class Watch(PeerWatch):
        def on_check_peers(self, msg: CheckPeers) -> None:
            checks.append(msg.due)
            super().on_check_peers(msg)

    seen: list[tuple[str, float]] = []

    class Timed(Recorder):
        def on_receive(self, message: Any) -> Any:
            if isinstance(message, PeerChanged):
                seen.append((message.new, time.monotonic()))
            return super().on_receive(message)

    rec = Timed.start()
    try:
        Watch.start(kit.ctx, "agent/peers", rec)
        wait_until(lambda: callbacks, 5)
        beat = wire.encode(hb("b"))

        def arrive() -> None:
            msg = SimpleNamespace(data=beat, subject="harmony.m.b.hb", headers=None, reply="")
            loop.call_soon_threadsafe(callbacks[0], msg)

        last = time.monotonic()
        for _ in range(int(3.0 / IV) * 2):  # 3 s of heartbeats, twice per interval
            last = time.monotonic()
            arrive()
            time.sleep(IV / 2)  # the peer's own pace, not a wait for a result
        assert [s for s, _ in seen] == ["alive"], seen
        assert [d for d in checks if d is not None] == [], checks  # no deadline passed
        assert len(checks) <= 5, checks  # the periodic safety net only (one a second)
        wait_until(lambda: [s for s, _ in seen] == ["alive", "suspect", "silent"], 10)
        t = kit.ctx.config.timings
        suspect_at, silent_at = seen[1][1] - last, seen[2][1] - last
        assert t.suspect_after * IV <= suspect_at < t.suspect_after * IV + 0.25, seen
        assert t.silent_after * IV <= silent_at < t.silent_after * IV + 0.25, seen
        age = {p.site: p.last_heartbeat_age for p in kit.ctx.peer_view.read(time.monotonic())}
        assert age["b"] is not None and age["b"] >= silent_at
    finally:
        pykka.ActorRegistry.stop_all()
        kit.ctx.scheduler.stop()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
