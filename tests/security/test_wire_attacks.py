"""The wire rows of issue 9's attack table, replayed against real agents on a loopback mesh
by a client that names any sender it likes (the NATS server's permissions are another test's
business: here the agent must decide by the sender it is given).

Each attack is refused or contained: asks are answered with the reason, the refusal is
counted by reason in the site's snapshot, no second copy appears in the process table, and
no agent or actor restarts.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from support.meshes import actor, dump
from support.waiting import run_async, stays, wait_until
from support.wire_attacks import MARKS, MESH, ask_raw, copies, delta, rejected, snapshot, start_mesh

from harmony.actors.messages import (
    CopyInfo,
    FenceWorkload,
    GetNotices,
    GetOutput,
    Heartbeat,
    Notice,
    Notices,
    Output,
    Ping,
    Pong,
    ProbePeer,
    StartWorkload,
    StopWorkload,
)
from harmony.actors.site import SITE_PATH
from harmony.mesh import subjects, wire
from harmony.mesh.connection import MeshConnection
from harmony.mesh.remote import RemoteError, RemoteRef
from harmony.sim.launch import LocalMesh

pytestmark = pytest.mark.mesh

OP = subjects.OPERATOR


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    yield from start_mesh(Path(tmp_path_factory.mktemp("wire")))


@pytest.fixture(scope="module")
def conn(mesh: LocalMesh) -> Iterator[MeshConnection]:
    c = MeshConnection(mesh.client_urls(), "attacker").start()
    try:
        c.wait_connected(10)
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def settled(mesh: LocalMesh, conn: MeshConnection) -> dict[str, int]:
    """Every workload runs on a, once: the pid of each copy, from the process table."""

    def running() -> dict[str, int] | None:
        snap = snapshot(conn, "a")
        for w in MARKS:
            info = actor(snap, f"agent/workload/{w}/run")
            if info is None or info.state != "running":
                return None
        found = {w: copies(mark) for w, mark in MARKS.items()}
        if any(len(pids) != 1 for pids in found.values()):
            return None
        return {w: pids[0] for w, pids in found.items()}

    return wait_until(running, 60, message=lambda: dump(mesh))  # type: ignore[no-any-return]


def untouched(conn: MeshConnection, settled: dict[str, int], incarnations: dict[str, str]) -> bool:
    """Same agents, nothing restarted, each copy the same one process, running on a only."""
    for site in ("a", "b"):
        snap = snapshot(conn, site)
        if snap.incarnation != incarnations[site] or any(i.restarts for i in snap.actors):
            return False
        for w in MARKS:
            info = actor(snap, f"agent/workload/{w}/run")
            if info is None or (info.state == "running") != (site == "a"):
                return False
    return all(copies(mark) == [settled[w]] for w, mark in MARKS.items())


@pytest.fixture
def baseline(conn: MeshConnection, settled: dict[str, int]) -> dict[str, str]:
    incarnations = {s: snapshot(conn, s).incarnation for s in ("a", "b")}
    assert untouched(conn, settled, incarnations)
    return incarnations


def refused(ref: RemoteRef, message: wire.Message) -> str:
    with pytest.raises(RemoteError) as caught:
        ref.ask(message)
    return caught.value.code


# -- commands to run actors ---------------------------------------------------------------


def test_start_to_a_standbys_run_actor_is_refused_from_a_site_and_the_operator(
    conn: MeshConnection, settled: dict[str, int], baseline: dict[str, str]
) -> None:
    """Today's attack started a second copy of an absolute-consistency workload on b."""
    before = rejected(conn, "b")
    for sender in ("a", OP):
        ref = RemoteRef(conn, MESH, "b", "agent/workload/ledger/run", 3.0, sender=sender)
        assert refused(ref, StartWorkload()) == wire.ERR_NOT_EXPORTED
        assert refused(ref, StartWorkload(token=7)) == wire.ERR_NOT_EXPORTED
        ref.tell(StartWorkload())  # a tell is refused whole, silently, and counted
    wait_until(lambda: delta(rejected(conn, "b"), before) == {"not-exported": 6}, 10)
    stays(lambda: untouched(conn, settled, baseline), 2.0, "a second copy, or a restart")


def test_a_token_to_a_hooks_run_actor_never_reaches_a_hook(
    mesh: LocalMesh, conn: MeshConnection, settled: dict[str, int], baseline: dict[str, str]
) -> None:
    calls = {site: mesh.workdir / "hooks" / site / "calls" for site in ("a", "b")}
    for site in ("a", "b"):
        for sender in ({"a", "b"} - {site}).pop(), OP:
            ref = RemoteRef(conn, MESH, site, "agent/workload/hooked/run", 3.0, sender=sender)
            assert refused(ref, StartWorkload(token=2**62)) == wire.ERR_NOT_EXPORTED
            ref.tell(StartWorkload(token=2**62))
    # The one thing a run actor answers from afar: an operator's read (the TUI's output).
    out = RemoteRef(conn, MESH, "b", "agent/workload/hooked/run", 3.0, sender=OP).ask(
        GetOutput(lines=5)
    )
    assert isinstance(out, Output)
    stays(lambda: untouched(conn, settled, baseline), 1.0, "a restart or a second copy")
    token = actor(snapshot(conn, "a"), "agent/workload/hooked/run").detail["token"]  # type: ignore[union-attr]
    starts = [line for line in calls["a"].read_text().splitlines() if line.startswith("start")]
    assert starts == [f"start token={token}"]  # a's start, with its lease's token, only
    assert "start" not in calls["b"].read_text()  # b's boot fence only


def test_a_stop_with_a_nul_byte_and_60_fences_with_one_change_nothing(
    conn: MeshConnection, settled: dict[str, int], baseline: dict[str, str]
) -> None:
    """A NUL crashed the hooks run actor (its restart released the lease); 60 of them made
    the root supervisor give up and the agent exit."""
    before = rejected(conn, "a")
    run = RemoteRef(conn, MESH, "a", "agent/workload/hooked/run", 3.0, sender=OP)
    sup = RemoteRef(conn, MESH, "a", "agent/workload/hooked", 3.0, sender=OP)
    from_b = RemoteRef(conn, MESH, "a", "agent/workload/hooked/run", 3.0, sender="b")
    assert refused(run, StopWorkload(reason="x\0y")) == wire.ERR_MALFORMED
    assert refused(sup, StopWorkload(reason="x\0y")) == wire.ERR_MALFORMED
    assert refused(from_b, StopWorkload(reason="x\0y")) == wire.ERR_NOT_EXPORTED
    for i in range(60):
        target = (run, sup)[i % 2]
        assert refused(target, FenceWorkload(reason="\0")) == wire.ERR_MALFORMED
    want = {"malformed": 62, "not-exported": 1}
    wait_until(lambda: delta(rejected(conn, "a"), before) == want, 10)
    stays(lambda: untouched(conn, settled, baseline), 2.0, "a restart or a lost copy")


# -- probes ---------------------------------------------------------------------------------


def test_a_probe_of_the_site_itself_is_refused_at_once(
    mesh: LocalMesh, conn: MeshConnection, settled: dict[str, int], baseline: dict[str, str]
) -> None:
    """It stalled the site actor for the whole timeout (12 s): peers called a silent."""
    site = RemoteRef(conn, MESH, "a", SITE_PATH, 3.0, sender=OP)
    t0 = time.monotonic()
    assert refused(site, ProbePeer(target="a", timeout=12)) == wire.ERR_INVALID
    assert site.ask(Ping(text="still here")) == Pong(text="still here", site="a")
    assert time.monotonic() - t0 < 2.0
    # A long timeout is clamped to the site's ask_timeout (3 s), never waited in full.
    from_b = RemoteRef(conn, MESH, "a", SITE_PATH, 3.0, sender="b")
    assert refused(from_b, ProbePeer(target="b")) == wire.ERR_NOT_EXPORTED
    peer = next(p for p in snapshot(conn, "b").peers if p.site == "a")
    assert peer.state == "alive"
    assert untouched(conn, settled, baseline)


def test_a_notes_sender_is_the_subjects_not_the_messages(conn: MeshConnection) -> None:
    RemoteRef(conn, MESH, "a", SITE_PATH, 3.0, sender="b").tell(
        Notice(text="forged", sender="the-boss")
    )

    def noted() -> bool:
        got = RemoteRef(conn, MESH, "a", SITE_PATH, 3.0, sender=OP).ask(GetNotices())
        assert isinstance(got, Notices)
        return any(n.text == "forged" and n.sender == "b" for n in got.items)

    wait_until(noted, 10)


# -- senders --------------------------------------------------------------------------------


def test_unknown_senders_and_impostors_of_the_site_itself_are_refused(
    conn: MeshConnection,
) -> None:
    before = rejected(conn, "a")
    payload = wire.encode(Ping(text="x"))
    for sender in ("zz", "a", "_all", "b-not"):
        reply = ask_raw(conn, "a", sender, SITE_PATH, payload)
        assert isinstance(reply, wire.ErrorReply) and reply.code == wire.ERR_UNKNOWN_SENDER
    wait_until(lambda: delta(rejected(conn, "a"), before) == {"unknown-sender": 4}, 10)


def test_lease_and_peer_actors_are_local_only(conn: MeshConnection) -> None:
    for sender in ("b", OP):
        for path in ("agent/workload/ledger/lease", "agent/peers"):
            reply = ask_raw(conn, "a", sender, path, wire.encode(Ping()))
            assert isinstance(reply, wire.ErrorReply) and reply.code == wire.ERR_NOT_EXPORTED


def test_an_oversized_frame_is_refused_before_it_is_decoded(conn: MeshConnection) -> None:
    before = rejected(conn, "a")
    big = wire.encode(Ping(text="x")) + b"\0" * wire.MAX_FRAME_BYTES
    reply = ask_raw(conn, "a", OP, SITE_PATH, big)
    assert isinstance(reply, wire.ErrorReply) and reply.code == wire.ERR_TOO_LARGE
    wait_until(lambda: delta(rejected(conn, "a"), before) == {"too-large": 1}, 10)


# -- heartbeats -----------------------------------------------------------------------------


def test_forged_heartbeats_never_join_the_peer_table_nor_stop_a_copy(
    conn: MeshConnection, settled: dict[str, int], baseline: dict[str, str]
) -> None:
    """One heartbeat from "zz" announcing an older copy of `sba` made every site stop its
    own ("keep-original keeps zz"), and the peer table grew with every name."""
    before = {s: rejected(conn, s) for s in ("a", "b")}
    older = {"sba": CopyInfo(started_wall=1.0, score=1e9)}

    def beat(site: str) -> bytes:
        return wire.encode(
            Heartbeat(
                mesh=MESH,
                site=site,
                seq=1,
                incarnation="forged",
                mono=1.0,
                wall=time.time(),
                interval=0.2,
                copies=older,
            )
        )

    # A site ignores what comes on its own subject (its own heartbeats, echoed back).
    conn.publish(subjects.heartbeat(MESH, "zz"), beat("zz"))  # unknown: a and b count it
    conn.publish(subjects.heartbeat(MESH, "zz"), beat("b"))  # b's, not on b's subject
    conn.publish(subjects.heartbeat(MESH, "b"), beat("zz"))  # on b's subject: a counts it
    conn.publish(subjects.heartbeat(MESH, "a"), beat("b"))  # on a's subject: b counts it
    for i in range(50):  # many names: the table must not grow
        conn.publish(subjects.heartbeat(MESH, f"x{i}"), beat(f"x{i}"))
    want_a = {"subject-mismatch": 2, "unknown-sender": 51}
    want_b = {"subject-mismatch": 2, "unknown-sender": 51}
    wait_until(lambda: delta(rejected(conn, "a"), before["a"]) == want_a, 10)
    wait_until(lambda: delta(rejected(conn, "b"), before["b"]) == want_b, 10)
    for site in ("a", "b"):
        assert {p.site for p in snapshot(conn, site).peers} == {"a", "b"} - {site}
    stays(lambda: untouched(conn, settled, baseline), 3.0, "a copy stopped or restarted")


# -- fuzz -----------------------------------------------------------------------------------


def test_300_fuzzed_frames_are_all_answered(
    conn: MeshConnection, settled: dict[str, int], baseline: dict[str, str]
) -> None:
    """12 of 300 asks were never answered: invalid UTF-8 escaped the decoder uncounted."""
    from support.fuzzing import harmful, mutate, seeds

    rng = random.Random(9)
    pool = seeds()
    before = rejected(conn, "a")
    for _ in range(300):
        frame = mutate(rng, rng.choice(pool))
        if harmful(frame, many=False):  # a valid move or stop would be obeyed: not an attack
            continue
        path = rng.choice([SITE_PATH, "agent", "agent/workload/ledger"])
        reply = ask_raw(conn, "a", rng.choice(["b", OP]), path, frame, timeout=5)
        assert isinstance(reply, wire.Message)
    after = rejected(conn, "a")
    assert sum(delta(after, before).values()) > 0
    stays(lambda: untouched(conn, settled, baseline), 1.0, "a restart or a lost copy")


def test_frames_that_jetstream_relayed_are_refused_as_such(
    mesh: LocalMesh, conn: MeshConnection, settled: dict[str, int], baseline: dict[str, str]
) -> None:
    """JetStream publishes wherever its requester says (an API answer to any reply subject,
    a push consumer to any deliver subject), so a site allowed to use the lease stream
    could have a stored message land on b's subjects under any sender's name. Our frames
    never carry headers nor a `$JS.` reply; such a frame is refused as `relayed` before it
    counts against the sender it names. (The server of this version delivered nothing in
    our tries: a consumer aimed at an agent's subject stayed unbound, and it refuses a
    client's publish with a `$JS.ACK` reply itself; this is the second line.)"""
    before = rejected(conn, "b")
    frame = wire.encode(Notice(text="relayed", sender="x"))
    tell = subjects.actor(MESH, "b", subjects.TELL, "a", SITE_PATH)
    ask = subjects.actor(MESH, "b", subjects.ASK, OP, SITE_PATH)
    heartbeat = subjects.heartbeat(MESH, "a")

    async def relay() -> None:
        nc = await nats.connect(mesh.client_urls())
        try:
            stored = {"Nats-Stream": "KV_x", "Nats-Sequence": "5"}
            await nc.publish(tell, frame, headers=stored)
            await nc.publish(ask, frame, headers=stored)
            await nc.publish(heartbeat, b"\x80", headers=stored)
            await nc.flush()
        finally:
            await nc.close()

    run_async(relay())
    wait_until(
        lambda: delta(rejected(conn, "b"), before) == {"relayed": 3},
        10,
        message=lambda: f"counted: {delta(rejected(conn, 'b'), before)}",
    )
    notes = RemoteRef(conn, MESH, "b", SITE_PATH, 3.0, sender=OP).ask(GetNotices())
    assert isinstance(notes, Notices)
    assert all(n.text != "relayed" for n in notes.items)
