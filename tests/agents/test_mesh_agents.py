"""Agents on a real 3-server NATS cluster: remote tell/ask, bad messages, liveness."""

from __future__ import annotations

import signal
import time

import msgspec
import pytest
from support.meshes import actor, dump, peer_state, snapshots
from support.processes import pid_alive
from support.waiting import wait_until

from harmony.actors.messages import (
    GetNotices,
    Notices,
    Ping,
    Pong,
    ProbePeer,
    ProbeResult,
    SendNotice,
)
from harmony.actors.site import SITE_PATH
from harmony.mesh import subjects, wire
from harmony.mesh.connection import MeshConnection
from harmony.mesh.remote import RemoteError, RemoteRef
from harmony.sim.launch import LocalMesh

pytestmark = pytest.mark.mesh


def site_ref(conn: MeshConnection, site: str) -> RemoteRef:
    return RemoteRef(conn, "t3", site, SITE_PATH, 3.0, sender=subjects.OPERATOR)


def test_every_site_answers_a_remote_ask(conn: MeshConnection) -> None:
    for site in ("a", "b", "c"):
        pong = site_ref(conn, site).ask(Ping(text=f"hi {site}"))
        assert pong == Pong(text=f"hi {site}", site=site)


def test_agent_asks_another_agent(conn: MeshConnection) -> None:
    """a's site actor asks b's (and c's) site actor over the mesh, and reports the answer."""
    for target in ("b", "c"):
        result = site_ref(conn, "a").ask(ProbePeer(target=target))
        assert isinstance(result, ProbeResult)
        assert (result.source, result.target, result.ok, result.error) == ("a", target, True, "")
        assert result.rtt_ms > 0


def test_agent_tells_another_agent(conn: MeshConnection) -> None:
    """a tells c a Notice (one-way); c's site actor records it with a as the sender."""
    text = f"hello from a at {time.monotonic()}"
    site_ref(conn, "a").ask(SendNotice(target="c", text=text))

    def arrived() -> bool:
        got = site_ref(conn, "c").ask(GetNotices())
        assert isinstance(got, Notices)
        return any(n.text == text and n.sender == "a" for n in got.items)

    wait_until(arrived, 10, message="notice from a never reached c")


def test_probe_of_unknown_site_fails_cleanly(conn: MeshConnection) -> None:
    result = site_ref(conn, "a").ask(ProbePeer(target="nowhere", timeout=0.5))
    assert isinstance(result, ProbeResult)
    assert not result.ok and "nobody answers" in result.error and "nowhere" in result.error


def test_ask_to_unknown_actor_is_an_error(conn: MeshConnection) -> None:
    with pytest.raises(RemoteError) as e:
        RemoteRef(conn, "t3", "b", "agent/nope", 3.0, sender=subjects.OPERATOR).ask(Ping())
    assert e.value.code == wire.ERR_UNKNOWN_ACTOR


def test_malformed_messages_are_rejected_and_the_actor_keeps_working(
    conn: MeshConnection, mesh3: LocalMesh
) -> None:
    # As the operator: the test's credential may send only as `_op` (a secure mesh).
    ask_subject = subjects.actor("t3", "b", subjects.ASK, subjects.OPERATOR, SITE_PATH)
    tell_subject = subjects.actor("t3", "b", subjects.TELL, subjects.OPERATOR, SITE_PATH)
    snaps = snapshots(conn, mesh3)
    before = snaps["b"]
    bad_payloads = {
        "garbage": b"\xc1\x00not msgpack",
        "unknown type": msgspec.msgpack.encode({"t": "NoSuchMessage", "v": 1}),
        "wrong field type": msgspec.msgpack.encode({"t": "Ping", "v": 1, "text": 42}),
        "future schema": msgspec.msgpack.encode({"t": "Ping", "v": 99, "text": "x"}),
    }
    for label, payload in bad_payloads.items():
        reply = wire.decode(conn.request(ask_subject, payload, timeout=3))
        assert isinstance(reply, wire.ErrorReply), label
        assert reply.code == wire.ERR_MALFORMED, (label, reply)
    conn.publish(tell_subject, b"\x93garbage")
    # The actor is alive, answers, and was never restarted.
    assert site_ref(conn, "b").ask(Ping(text="still here")) == Pong(text="still here", site="b")

    def counted() -> bool:
        snap = snapshots(conn, mesh3)["b"]
        return snap.malformed >= before.malformed + len(bad_payloads) + 1

    wait_until(counted, 10, message="malformed messages were not counted")
    after = snapshots(conn, mesh3)["b"]
    site = actor(after, SITE_PATH)
    assert site is not None and site.restarts == 0 and site.state == "running"
    assert after.incarnation == before.incarnation


def test_snapshot_shows_tree_and_supervision_policy(conn: MeshConnection, mesh3: LocalMesh) -> None:
    snaps = snapshots(conn, mesh3)
    assert set(snaps) == {"a", "b", "c"}
    for site, snap in snaps.items():
        paths = {a.path: a for a in snap.actors}
        assert {"agent", "agent/site", "agent/peers", "agent/workload/w"} <= set(paths)
        assert "max 5 restarts in 30s" in paths["agent"].policy
        assert {p.site for p in snap.peers} == {"a", "b", "c"} - {site}

    def running() -> object:
        info = actor(snapshots(conn, mesh3)["a"], "agent/workload/w/run")
        return info if info is not None and info.state == "running" else None

    run = wait_until(running, 15, message="the primary never ran the workload")
    assert run.detail["pid"]
    assert pid_alive(int(run.detail["pid"]))


def test_killed_agent_is_reported_silent_then_rejoins(
    conn: MeshConnection, mesh3: LocalMesh
) -> None:
    """SIGKILL c (agent and its nats-server): a and b see c go silent; restarted, c rejoins."""
    wait_until(
        lambda: all(
            peer_state(s, "c") == "alive" for k, s in snapshots(conn, mesh3).items() if k != "c"
        ),
        15,
        message=lambda: dump(mesh3),
    )
    old = snapshots(conn, mesh3)["c"].incarnation
    mesh3.kill("c", signal.SIGKILL)
    assert not mesh3.procs["c"].running
    assert mesh3.server_pids("c") == []

    def others_see(state: str) -> bool:
        snaps = snapshots(conn, mesh3, timeout=1.0)
        return all(peer_state(snaps[s], "c") == state for s in ("a", "b") if s in snaps) and {
            "a",
            "b",
        } <= set(snaps)

    wait_until(lambda: others_see("silent"), 15, message=lambda: dump(mesh3))

    mesh3.start(["c"], timeout=60)
    wait_until(lambda: others_see("alive"), 20, message=lambda: dump(mesh3))

    def c_is_back() -> bool:
        snap = snapshots(conn, mesh3).get("c")
        return (
            snap is not None
            and snap.incarnation != old
            and all(p.state == "alive" for p in snap.peers)
        )

    wait_until(c_is_back, 20, message=lambda: dump(mesh3))
