"""A bounded fuzz of one real agent: tens of thousands of mutated frames on its ask, tell and
heartbeat subjects, in well under a minute. Every ask is answered (refusals with the reason
the rules give), the agent is the same process with nothing restarted afterwards, and its
counters by reason equal what was sent, reason by reason.

The longer run is `bench/fuzz.py`.
"""

from __future__ import annotations

import collections
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.fuzzing import (
    expect_actor,
    expect_heartbeat,
    harmful,
    heartbeat,
    mutate,
    oversized,
    seeds,
)
from support.meshes import FAST_HEARTBEATS, actor
from support.waiting import wait_until
from support.wire_attacks import delta, snapshot

from harmony.actors.exports import ExportPolicy, mesh_sites
from harmony.actors.messages import Ping, Pong
from harmony.actors.site import SITE_PATH
from harmony.config import load_config
from harmony.mesh import subjects, wire
from harmony.mesh.admission import RATE_BURST, RATE_PER_SENDER
from harmony.mesh.connection import MeshConnection
from harmony.sim.launch import LocalMesh

pytestmark = pytest.mark.mesh

MESH = "fuzz"
FRAMES = 30_000
PATHS = [
    SITE_PATH,
    "agent",
    "agent/workload/ledger",
    "agent/workload/ledger/run",
    "agent/peers",
]


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    """One agent, a; its config names b (a standby that never starts) as a site of the mesh."""
    from harmony.config import FailoverTopologyConfig, ProcessDriverConfig, WorkloadConfig

    ledger = WorkloadConfig(
        name="ledger",
        driver=ProcessDriverConfig(command=["sleep", "600"]),
        topology=FailoverTopologyConfig(primary="a", standbys=["b"]),
        strategy="split-brain-allowed",  # no lease: nothing here waits on JetStream
    )
    m = LocalMesh(
        Path(tmp_path_factory.mktemp("fuzz")),
        mesh=MESH,
        sites=("a",),
        timings=FAST_HEARTBEATS,
        workloads=[ledger],
        # The agent's own checks, as behind a server that lets everything through (the
        # secure server's refusals come first: tests/security/test_attack_table.py).
        secure=False,
    )
    try:
        m.start(timeout=60)
        yield m
    finally:
        m.stop()


class Pace:
    """Keeps each known sender under the agent's rate limit, so that every frame is counted
    under the reason the rules give it (rate limiting has its own test)."""

    def __init__(self, rate: float = 0.5 * RATE_PER_SENDER, burst: float = 0.5 * RATE_BURST):
        self.rate, self.burst = rate, burst
        self.sent: collections.Counter[str] = collections.Counter()
        self.t0 = time.monotonic()

    def __call__(self, sender: str) -> None:
        self.sent[sender] += 1
        ahead = (self.sent[sender] - self.burst) / self.rate - (time.monotonic() - self.t0)
        if ahead > 0:
            time.sleep(ahead)  # pacing a sender, not waiting for a condition


def test_tens_of_thousands_of_mutated_frames(agent: LocalMesh) -> None:
    cfg = load_config(agent.procs["a"].config_path)
    policy = ExportPolicy(cfg)
    known = mesh_sites(cfg) - {"a"}
    rng = random.Random(20261128)
    pool = seeds(MESH, "b")
    conn = MeshConnection(agent.client_urls(), "fuzzer").start()
    try:
        conn.wait_connected(10)
        before = snapshot_of(conn)
        expected: collections.Counter[str] = collections.Counter()
        sent: collections.Counter[str] = collections.Counter()
        pace = Pace()
        t0 = time.monotonic()
        for i in range(FRAMES):
            channel = rng.choices(["ask", "tell", "hb"], [2, 5, 3])[0]
            if channel == "hb":
                site = rng.choice(["b", "zz"])
                msg = heartbeat(MESH, rng.choice([site, "b", "zz"]), witness=rng.random() < 0.2)
                frame = oversized(msg) if i % 5000 == 0 else mutate(rng, msg)
                reason = expect_heartbeat(MESH, known, site, frame)
                conn.publish(subjects.heartbeat(MESH, site), frame)
            else:
                many = channel == "tell"
                sender = rng.choices(["b", subjects.OPERATOR, "zz", "a"], [10, 10, 1, 1])[0]
                path = rng.choice(PATHS)
                if i % 5000 == 1:
                    frame = oversized(rng.choice(pool))
                elif many:
                    parts = [mutate(rng, rng.choice(pool)) for _ in range(rng.randrange(1, 4))]
                    frame = wire.frame_tells(parts)
                    if rng.random() < 0.3:
                        frame = mutate_bytes(rng, frame)
                else:
                    frame = mutate(rng, rng.choice(pool))
                if harmful(frame, many):
                    continue
                reason = expect_actor(policy, sender, path, frame, many)
                if sender in (subjects.OPERATOR, *known):
                    pace(sender)
                subject = subjects.actor(MESH, "a", channel, sender, path)
                if many:
                    conn.publish(subject, frame)
                else:
                    reply = wire.decode(conn.request(subject, frame, timeout=5))
                    code = reply.code if isinstance(reply, wire.ErrorReply) else None
                    if reason is not None:  # refused: answered with the reason
                        assert code == reason, (reason, reply, frame)
                    else:  # admitted: the actor answered (its handler may still say no)
                        assert code in (None, wire.ERR_HANDLER, wire.ERR_UNHANDLED), reply
            sent[channel] += 1
            if reason is not None:
                expected[reason] += 1
        elapsed = time.monotonic() - t0
        # One connection keeps order: once this ask is answered, every frame was handled.
        ping = wire.decode(
            conn.request(
                subjects.actor(MESH, "a", subjects.ASK, subjects.OPERATOR, SITE_PATH),
                wire.encode(Ping(text="done")),
                timeout=5,
            )
        )
        assert ping == Pong(text="done", site="a")

        def counted() -> bool:
            got = delta(snapshot_of(conn)[0], before[0])
            return got == dict(expected)

        wait_until(
            counted,
            20,
            message=lambda: (
                f"sent {dict(sent)}, expected {dict(expected)}, "
                f"agent counted {delta(snapshot_of(conn)[0], before[0])}"
            ),
        )
        after = snapshot_of(conn)
        assert after[1] == before[1], "the agent restarted"
        assert agent.procs["a"].running
        assert sum(sent.values()) > 20_000 and elapsed < 60, (sent, elapsed)
        print(f"\n{sum(sent.values())} frames in {elapsed:.1f} s: {dict(sent)}; {dict(expected)}")
    finally:
        conn.close()


def mutate_bytes(rng: random.Random, frame: bytes) -> bytes:
    b = bytearray(frame)
    if b and rng.random() < 0.5:
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return bytes(b)
    return bytes(b[: rng.randrange(len(b) + 1)])


def snapshot_of(conn: MeshConnection) -> tuple[dict[str, int], str]:
    """(rejected by reason, incarnation) of a; nothing in its tree ever restarted."""
    snap = snapshot(conn, "a", timeout=5, mesh=MESH)
    root = actor(snap, "agent")
    assert root is not None and root.restarts == 0
    assert all(a.restarts == 0 for a in snap.actors), snap.actors
    return dict(snap.rejected), snap.incarnation


def test_a_flooding_sender_is_cut_to_its_rate_and_the_others_are_still_served(
    agent: LocalMesh,
) -> None:
    import threading

    conn = MeshConnection(agent.client_urls(), "flooder").start()
    op = MeshConnection(agent.client_urls(), "operator").start()
    try:
        conn.wait_connected(10)
        op.wait_connected(10)
        before, incarnation = snapshot_of(op)
        ping = wire.encode(Ping(text="op"))
        op_subject = subjects.actor(MESH, "a", subjects.ASK, subjects.OPERATOR, SITE_PATH)
        latencies: list[float] = []
        stop = threading.Event()

        def operator() -> None:  # asks one at a time during the whole flood
            while not stop.is_set():
                t = time.monotonic()
                reply = wire.decode(op.request(op_subject, ping, timeout=5))
                assert reply == Pong(text="op", site="a"), reply
                latencies.append(time.monotonic() - t)

        worker = threading.Thread(target=operator, daemon=True)
        worker.start()
        flood = subjects.actor(MESH, "a", subjects.TELL, "b", SITE_PATH)
        frame = wire.frame_tells([wire.encode(Ping(text="flood"))])
        n = 40_000
        t0 = time.monotonic()
        for _ in range(n):
            conn.publish(flood, frame)
        done = conn.request(
            subjects.actor(MESH, "a", subjects.ASK, "b", SITE_PATH), ping, timeout=10
        )  # the flooder's own ask, after its flood: refused or answered, never lost
        took = time.monotonic() - t0
        stop.set()
        worker.join(10)
        assert not worker.is_alive()
        reply = wire.decode(done)
        assert reply == Pong(text="op", site="a") or (
            isinstance(reply, wire.ErrorReply) and reply.code == wire.ERR_RATE_LIMITED
        )
        admitted_at_most = RATE_BURST + RATE_PER_SENDER * took
        counted = delta(snapshot_of(op)[0], before)
        limited = counted.get(wire.ERR_RATE_LIMITED, 0)
        assert limited >= n - admitted_at_most, (counted, took)
        assert set(counted) == {wire.ERR_RATE_LIMITED}, counted
        assert latencies and max(latencies) < 2.0, sorted(latencies)[-5:]
        assert snapshot_of(op)[1] == incarnation
        print(
            f"\nflood of {n} in {took:.2f} s: {counted}; operator asks {len(latencies)}, "
            f"max {max(latencies) * 1000:.1f} ms"
        )
    finally:
        conn.close()
        op.close()
