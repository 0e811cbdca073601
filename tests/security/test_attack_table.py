"""Issue 9's attack table, replayed against a *secure* mesh (the default: mutual TLS, an nkey
per site and identity, permissions per credential) by three attackers:

* anonymous: no certificate, no nkey;
* an impostor: site a's valid credentials, claiming to be b, the operator or a site that
  does not exist (and, as itself, reaching what it may not);
* a read-only operator (role ``reader``).

Each row is refused or contained: by the server (a permission violation it logs, so nothing
reaches an agent) or by the agent's bridge (counted by reason, answered). After each row:
the same agents (no restart), and each copy the same process, on a only (the process table's
word, not the journal's). `test_wire_attacks` replays the same rows against the agent's own
checks alone (a plaintext mesh); `test_keys_server` attacks bare servers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from support.meshes import FAST_HEARTBEATS, actor, dump
from support.waiting import stays, wait_until
from support.wire_attacks import (
    MARK,
    MARKS,
    MESH,
    copies,
    delta,
    rejected,
    same_agents,
    server_refuses_publish,
    snapshot,
    violations,
    write_hooks,
)
from support.wire_attacks import workloads as wire_workloads

from harmony.actors.messages import (
    FenceWorkload,
    Heartbeat,
    ProbePeer,
    Snapshot,
    StartWorkload,
    StopWorkload,
)
from harmony.actors.site import SITE_PATH
from harmony.config import FailoverTopologyConfig, ProcessDriverConfig, WorkloadConfig
from harmony.mesh import subjects, wire
from harmony.mesh.connection import MeshConnection, MeshUnavailable
from harmony.mesh.subjects import lease_bucket
from harmony.security.material import MeshDir
from harmony.sim.launch import LocalMesh, pids_mentioning

pytestmark = pytest.mark.mesh

OP = subjects.OPERATOR
BUCKET = lease_bucket(MESH, "bonly")
B_ONLY = "bonly"
"""A workload whose topology is b alone: site a may not touch its lease."""


def _workloads(hooks: Path) -> list[WorkloadConfig]:
    only_b = WorkloadConfig(
        name=B_ONLY,
        driver=ProcessDriverConfig(command=["sleep", str(MARK + 3)]),
        topology=FailoverTopologyConfig(primary="b"),
    )
    return [*wire_workloads(hooks), only_b]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    workdir = Path(tmp_path_factory.mktemp("attack"))
    per_site = {site: _workloads(write_hooks(workdir, site)) for site in ("a", "b")}
    m = LocalMesh(
        workdir, mesh=MESH, sites=("a", "b"), timings=FAST_HEARTBEATS, site_workloads=per_site
    )
    assert m.secure
    try:
        m.write_configs()
        MeshDir(m.mesh_dir).add_identity("watch", "reader")
        m.start(timeout=90)
        yield m
    finally:
        m.stop()
        for mark in (MARK, MARK + 1, MARK + 2, MARK + 3):
            for pid in pids_mentioning(f"sleep {mark}"):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


def _connect(mesh: LocalMesh, name: str) -> MeshConnection:
    identity = mesh.identity_of(name)
    return MeshConnection(mesh.client_urls(), f"attacker-{name}", identity=identity).start()


def _connection(conn: MeshConnection) -> Iterator[MeshConnection]:
    try:
        conn.wait_connected(15)
        yield conn
    finally:
        conn.close()


@pytest.fixture(scope="module")
def op(mesh: LocalMesh) -> Iterator[MeshConnection]:
    """The mesh's own operator: the observer of every row."""
    yield from _connection(mesh.connect("observer"))


@pytest.fixture(scope="module")
def impostor(mesh: LocalMesh) -> Iterator[MeshConnection]:
    """Site a's own credentials."""
    yield from _connection(_connect(mesh, "a"))


@pytest.fixture(scope="module")
def reader(mesh: LocalMesh) -> Iterator[MeshConnection]:
    yield from _connection(_connect(mesh, "watch"))


@pytest.fixture(scope="module")
def settled(mesh: LocalMesh, op: MeshConnection) -> dict[str, int]:
    """Every workload of a runs there, once, and bonly on b: pids from the process table."""
    marks = {**MARKS, B_ONLY: MARK + 3}

    def running() -> dict[str, int] | None:
        for site, names in (("a", MARKS), ("b", [B_ONLY])):
            snap = snapshot(op, site)
            for w in names:
                info = actor(snap, f"agent/workload/{w}/run")
                if info is None or info.state != "running":
                    return None
        found = {w: copies(mark) for w, mark in marks.items()}
        if any(len(pids) != 1 for pids in found.values()):
            return None
        return {w: pids[0] for w, pids in found.items()}

    return wait_until(running, 90, message=lambda: dump(mesh))  # type: ignore[no-any-return]


@pytest.fixture
def baseline(op: MeshConnection, settled: dict[str, int]) -> dict[str, str]:
    return {s: snapshot(op, s).incarnation for s in ("a", "b")}


def untouched(op: MeshConnection, settled: dict[str, int], incarnations: dict[str, str]) -> bool:
    """Same agents, nothing restarted, each copy the same one process where it was."""
    return same_agents(op, settled, incarnations, {**MARKS, B_ONLY: MARK + 3})


def ask_subject(site: str, sender: str, path: str) -> str:
    return subjects.actor(MESH, site, subjects.ASK, sender, path)


# -- anonymous -----------------------------------------------------------------------------


def test_anonymous_clients_never_get_in(mesh: LocalMesh, settled: dict[str, int]) -> None:
    """Every row needs a connection first: without a certificate and an nkey, none."""
    conn = MeshConnection(mesh.client_urls(), "anonymous").start()
    try:
        with pytest.raises(MeshUnavailable):
            conn.wait_connected(5)
    finally:
        conn.close()
    plain = [u.replace("tls://", "nats://") for u in mesh.client_urls()]
    conn = MeshConnection(plain, "anonymous-plain").start()
    try:
        with pytest.raises(MeshUnavailable):
            conn.wait_connected(5)
    finally:
        conn.close()


# -- the table, as an impostor and as a reader ------------------------------------------------

RUN_ROWS = [
    ("b", "agent/workload/ledger/run", StartWorkload()),  # a second copy on the standby
    ("a", "agent/workload/hooked/run", StartWorkload(token=2**62)),  # a forged token
    ("a", "agent/workload/hooked/run", StopWorkload(reason="x\0y")),  # a NUL byte
    ("a", SITE_PATH, ProbePeer(target="a", timeout=12)),  # a self-probe (stall)
]


@pytest.mark.parametrize("claim", ["b", OP, "zz"])
def test_an_impostor_cannot_speak_for_another_sender(
    mesh: LocalMesh,
    op: MeshConnection,
    impostor: MeshConnection,
    settled: dict[str, int],
    baseline: dict[str, str],
    claim: str,
) -> None:
    for site, path, message in RUN_ROWS:
        server_refuses_publish(mesh, impostor, ask_subject(site, claim, path), wire.encode(message))
    stays(lambda: untouched(op, settled, baseline), 1.0, "a second copy, or a restart")


def test_an_impostor_as_itself_reaches_only_what_is_exported(
    op: MeshConnection, impostor: MeshConnection, settled: dict[str, int], baseline: dict[str, str]
) -> None:
    """Site a's own name gets through the server, and the bridge refuses what a site may
    not do: run actors, operator commands, a self-probe; 60 fences with a NUL change
    nothing. Every ask is answered."""
    before = rejected(op, "b")
    for path, message in [
        ("agent/workload/ledger/run", StartWorkload()),
        ("agent/workload/hooked/run", StartWorkload(token=2**62)),
        ("agent/workload/ledger", StartWorkload()),
        (SITE_PATH, ProbePeer(target="b", timeout=12)),
    ]:
        answer = wire.decode(impostor.request(ask_subject("b", "a", path), wire.encode(message), 5))
        assert isinstance(answer, wire.ErrorReply), answer
        assert answer.code == wire.ERR_NOT_EXPORTED, answer
    for _ in range(60):
        subject = ask_subject("b", "a", "agent/workload/hooked")
        answer = wire.decode(impostor.request(subject, wire.encode(FenceWorkload(reason="\0")), 5))
        assert isinstance(answer, wire.ErrorReply)
    moved = delta(rejected(op, "b"), before)
    assert moved.get("not-exported", 0) + moved.get("malformed", 0) == 64, moved
    stays(lambda: untouched(op, settled, baseline), 1.0, "a second copy, or a restart")


def test_a_reader_may_watch_and_nothing_else(
    mesh: LocalMesh,
    op: MeshConnection,
    reader: MeshConnection,
    settled: dict[str, int],
    baseline: dict[str, str],
) -> None:
    assert isinstance(snapshot(reader, "a"), Snapshot)  # watching works
    for site, path, message in RUN_ROWS:
        for claim in (OP, "a"):
            subject = ask_subject(site, claim, path)
            server_refuses_publish(mesh, reader, subject, wire.encode(message))
    tell = subjects.actor(MESH, "a", subjects.TELL, OP, "agent/workload/hooked/run")
    before = violations(mesh, tell)
    reader.publish(tell, wire.encode(FenceWorkload(reason="reader")))
    wait_until(lambda: violations(mesh, tell) > before, 10)
    stays(lambda: untouched(op, settled, baseline), 1.0, "a second copy, or a restart")


def _heartbeat(site: str) -> bytes:
    hb = Heartbeat(
        mesh=MESH, site=site, seq=1, incarnation="forged", mono=1.0, wall=1.0, interval=0.2
    )
    return wire.encode(hb)


@pytest.mark.parametrize("who", ["impostor", "reader"])
def test_forged_heartbeats_are_refused_by_the_server(
    request: pytest.FixtureRequest,
    mesh: LocalMesh,
    op: MeshConnection,
    settled: dict[str, int],
    baseline: dict[str, str],
    who: str,
) -> None:
    """One forged heartbeat from "zz" stopped split-brain-allowed copies everywhere."""
    conn: MeshConnection = request.getfixturevalue(who)
    for site in ("zz", "b"):
        subject = subjects.heartbeat(MESH, site)
        before = violations(mesh, subject)
        conn.publish(subject, _heartbeat(site))
        wait_until(lambda s=subject, n=before: violations(mesh, s) > n, 10)  # type: ignore[misc]
    peers = {p.site for p in snapshot(op, "a").peers}
    assert peers == {"b"}, peers
    stays(lambda: untouched(op, settled, baseline), 1.0, "a stopped copy, or a restart")


@pytest.mark.parametrize("who", ["impostor", "reader"])
@pytest.mark.parametrize("verb", ["put", "del", "purge", "delete-stream"])
def test_leases_cannot_be_deleted_or_squatted(
    request: pytest.FixtureRequest,
    mesh: LocalMesh,
    op: MeshConnection,
    settled: dict[str, int],
    baseline: dict[str, str],
    who: str,
    verb: str,
) -> None:
    """A KV delete forced a failover; a squat caused a 23 s outage. bonly's lease is not
    a's to write (its topology is b alone), and no credential may purge or delete the
    stream."""
    conn: MeshConnection = request.getfixturevalue(who)
    subject = {
        "put": f"$KV.{BUCKET}.{B_ONLY}",
        "del": f"$KV.{BUCKET}.{B_ONLY}",
        "purge": f"$JS.API.STREAM.PURGE.KV_{BUCKET}",
        "delete-stream": f"$JS.API.STREAM.DELETE.KV_{BUCKET}",
    }[verb]
    payload = b'{"site":"a","incarnation":"squat","token":1}' if verb == "put" else b""
    server_refuses_publish(mesh, conn, subject, payload)
    stays(lambda: untouched(op, settled, baseline), 1.0, "a failover, or a restart")


def test_no_one_but_its_owner_reads_an_inbox_or_everything(
    mesh: LocalMesh, op: MeshConnection, impostor: MeshConnection, reader: MeshConnection
) -> None:
    """Subscribing to `>` showed every lease, API call and reply inbox; a forged reply to
    an operator's inbox was how status printed raw escapes."""
    inbox = "_INBOX.wire._op.forged"
    for conn in (impostor, reader):
        got: list[str] = []
        seen = threading.Event()

        def on(msg: object, got: list[str] = got, seen: threading.Event = seen) -> None:
            got.append(getattr(msg, "subject", "?"))
            seen.set()

        before = violations(mesh, '">"')
        sub = conn.subscribe(">", on)
        try:
            wait_until(lambda b=before: violations(mesh, '">"') > b, 10)  # type: ignore[misc]
            snapshot(op, "a")  # traffic that `>` would have shown
            assert not seen.wait(1.0), got
        finally:
            sub.unsubscribe()
        forged = msgspec.msgpack.encode({"site": "\x1b]52;c;Zm9v\x07"})
        before = violations(mesh, inbox)
        conn.publish(inbox, forged)
        wait_until(lambda b=before: violations(mesh, inbox) > b, 10)  # type: ignore[misc]
