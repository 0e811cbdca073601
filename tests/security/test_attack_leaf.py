"""The core's leafnode port, attacked against real servers of a secure core-and-edge mesh.

Cores a, b and c, edge e1 (real agents). `ledger` (absolute-consistency, `sleep MARK`) runs
on the edge e1 with a as standby; `aonly` (absolute-consistency, `sleep MARK+1`) on a
alone, so e1 may not touch its lease. The attacker is e1's owner, who holds e1's
certificate and nkey seed and runs a nats-server of its own (`EvilLeaf`): it dials a core's
leaf port and lets its local users publish and subscribe to anything. Before it: a leaf
connection without a certificate, with another CA's, with no or a wrong nkey, as a core site
and as an operator.

Each row is refused (the TLS handshake or the leaf connection fails, or nothing of it
reaches any agent: the core never tells a leaf about a subject the edge may not publish to,
so the edge's server has nowhere to send it) or contained (the agent's bridge counts it).
After each row: the same agents, each copy the same one process where it was (the process
table's word).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.meshes import FAST_HEARTBEATS, dump
from support.waiting import stays, wait_until
from support.wire_attacks import copies, delta, same_agents, snapshot
from support.wire_attacks import rejected as wire_rejected

from harmony.actors.messages import FenceWorkload, Heartbeat, StartWorkload
from harmony.config import FailoverTopologyConfig, ProcessDriverConfig, WorkloadConfig
from harmony.mesh import subjects, wire
from harmony.mesh.connection import MeshConnection
from harmony.mesh.ports import free_ports
from harmony.mesh.server_conf import nats_server_binary
from harmony.mesh.subjects import lease_bucket
from harmony.mesh.summaries import bucket_name as sites_bucket
from harmony.security import ca
from harmony.security.identity import Identity
from harmony.security.material import new_user_seed
from harmony.security.permissions import mesh_info_bucket
from harmony.sim.launch import LocalMesh, pids_mentioning

pytestmark = pytest.mark.mesh

MESH = "lf"
CORES = ("a", "b", "c")
EDGE = "e1"
BUCKET = lease_bucket(MESH, "aonly")
"""The lease bucket of `aonly`, a workload whose topology is a alone (not e1's)."""
MARK = random.randrange(100_000, 900_000)
MARKS = {"ledger": MARK, "aonly": MARK + 1}


def _sleeper(name: str, mark: int, primary: str, standbys: list[str]) -> WorkloadConfig:
    return WorkloadConfig(
        name=name,
        strategy="absolute-consistency",
        driver=ProcessDriverConfig(command=["sleep", str(mark)], restart="never"),
        topology=FailoverTopologyConfig(primary=primary, standbys=standbys),
    )


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    workdir = Path(tmp_path_factory.mktemp("leafattack"))
    loads = [
        _sleeper("ledger", MARKS["ledger"], EDGE, ["a"]),
        _sleeper("aonly", MARKS["aonly"], "a", []),
    ]
    m = LocalMesh(
        workdir,
        mesh=MESH,
        sites=(*CORES, EDGE),
        cores=3,
        timings=FAST_HEARTBEATS,
        workloads=loads,
    )
    assert m.secure
    try:
        m.start(timeout=120)
        yield m
    finally:
        m.stop()
        for mark in MARKS.values():
            for pid in pids_mentioning(f"sleep {mark}"):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def op(mesh: LocalMesh) -> Iterator[MeshConnection]:
    conn = mesh.connect("observer")
    try:
        conn.wait_connected(15)
        yield conn
    finally:
        conn.close()


@pytest.fixture(scope="module")
def settled(mesh: LocalMesh, op: MeshConnection) -> dict[str, int]:
    """ledger runs on e1 and aonly on a, once each: pids from the process table."""

    def running() -> dict[str, int] | None:
        found = {w: copies(mark) for w, mark in MARKS.items()}
        if any(len(pids) != 1 for pids in found.values()):
            return None
        return {w: pids[0] for w, pids in found.items()}

    return wait_until(running, 120, message=lambda: dump(mesh))  # type: ignore[no-any-return]


@pytest.fixture
def baseline(op: MeshConnection, settled: dict[str, int]) -> dict[str, str]:
    return {s: snapshot(op, s, mesh=MESH).incarnation for s in (*CORES, EDGE)}


def untouched(op: MeshConnection, settled: dict[str, int], incarnations: dict[str, str]) -> bool:
    """Same agents, nothing restarted, each copy the same one process where it was."""
    return same_agents(op, settled, incarnations, MARKS, mesh=MESH)


def rejected(op: MeshConnection, site: str) -> dict[str, int]:
    return wire_rejected(op, site, mesh=MESH)


def core_log(mesh: LocalMesh) -> list[str]:
    """Every line of the cores' server logs (to compare before and after a row)."""
    lines = []
    for site in CORES:
        for log in sorted((mesh.workdir / site / "nats").glob("nats-server.log*")):
            with contextlib.suppress(OSError):
                lines += [f"{site}: {ln}" for ln in log.read_text(errors="replace").splitlines()]
    return lines


def leaf_url(mesh: LocalMesh, core: str) -> str:
    return f"nats-leaf://127.0.0.1:{mesh.configs[core].nats.leafnode_port}"


# -- the attacker's own server ------------------------------------------------------------------


class EvilLeaf:
    """A nats-server run by an edge's owner: a leaf remote to the cores with whatever
    certificate and nkey it holds, and one local user (no password, no permissions)."""

    def __init__(
        self,
        workdir: Path,
        urls: list[str],
        cert: tuple[Path, Path] | None,
        ca_file: Path,
        seed: str | None,
    ) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.client_port, self.http_port = free_ports(2)
        tls = [f"        ca_file: {json.dumps(str(ca_file))}", "        timeout: 3"]
        if cert is not None:
            tls += [
                f"        cert_file: {json.dumps(str(cert[0]))}",
                f"        key_file: {json.dumps(str(cert[1]))}",
            ]
        remote = [
            "      urls: [" + ", ".join(json.dumps(u) for u in urls) + "]",
            '      account: "HARMONY"',
            *([f"      nkey: {json.dumps(seed)}"] if seed else []),
            "      tls {",
            *tls,
            "      }",
        ]
        conf = [
            'server_name: "evil"',
            f'listen: "127.0.0.1:{self.client_port}"',
            f'http: "127.0.0.1:{self.http_port}"',
            'accounts { HARMONY { users = [ {user: "owner", password: "owner"} ] } }',
            'no_auth_user: "owner"',
            'default_js_domain: {"HARMONY": ""}',
            "leafnodes {",
            '  reconnect: "250ms"',
            "  remotes: [",
            "    {",
            *remote,
            "    }",
            "  ]",
            "}",
        ]
        self.conf = self.dir / "evil.conf"
        self.conf.write_text("\n".join(conf) + "\n")
        self.log = self.dir / "evil.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> EvilLeaf:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(nats_server_binary()), "-c", str(self.conf)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_until(self._up, 20, message=lambda: self.log.read_text(errors="replace"))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def monitor(self, path: str) -> Any:
        url = f"http://127.0.0.1:{self.http_port}/{path}"
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.load(r)

    def _up(self) -> bool:
        try:
            self.monitor("varz")
        except OSError:
            return False
        return True

    def leafs(self) -> list[str]:
        return [leaf.get("name", "?") for leaf in self.monitor("leafz").get("leafs", [])]

    def interest(self) -> list[str]:
        """The subjects the core told this server about (its leaf link's interest)."""
        leafs = self.monitor("leafz?subs=1").get("leafs", [])
        return sorted({s for leaf in leafs for s in leaf.get("subscriptions_list") or []})

    @property
    def client_url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"


def _leaf_refused(
    mesh: LocalMesh, evil: EvilLeaf, markers: tuple[str, ...], settled: dict[str, int]
) -> str:
    """Wait for the cores to log a refusal (a line holding one of `markers`), then check
    that no link comes up for a while. Returns the refusal line."""
    before = len(core_log(mesh))

    def refusal() -> str | None:
        new = core_log(mesh)[before:]
        return next((ln for ln in new if any(m in ln for m in markers)), None)

    line: str = wait_until(
        refusal, 20, message=lambda: "\n".join(core_log(mesh)[before:][-20:]) or "no log line"
    )
    stays(lambda: evil.leafs() == [], 2.0, "a leaf link came up")
    return line


# -- who may open a leaf link ---------------------------------------------------------------


def _tls_handshake(port: int, ctx: ssl.SSLContext) -> str:
    """'' if a TLS session with the leaf port holds, else why not. The port sends its INFO
    in plaintext, then both sides upgrade; a refused client certificate shows as an alert
    on the first read, an accepted one as silence (the server waits for a CONNECT)."""
    ctx.check_hostname = False
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        info = b""
        while not info.endswith(b"\r\n"):
            chunk = raw.recv(1)
            if not chunk:
                return "refused: closed before INFO"
            info += chunk
        assert info.startswith(b"INFO "), info
        try:
            with ctx.wrap_socket(raw) as tls:
                tls.settimeout(1.5)
                try:
                    data = tls.recv(1)
                except TimeoutError:
                    return ""
                return f"refused: {data!r}" if not data else ""
        except (ssl.SSLError, OSError) as e:
            return f"refused: {e}"


def test_no_certificate_or_another_cas_never_gets_a_tls_session(
    mesh: LocalMesh,
    op: MeshConnection,
    settled: dict[str, int],
    baseline: dict[str, str],
    tmp_path: Path,
) -> None:
    site: Identity = mesh.identity_of(EDGE)
    port = mesh.configs["a"].nats.leafnode_port
    anonymous = ssl.create_default_context(cafile=str(site.ca_file))
    assert _tls_handshake(port, anonymous).startswith("refused"), "no certificate: TLS done"
    foreign = ca.new_ca(MESH, "someone else's CA")
    pem = ca.issue(foreign, MESH, EDGE, server=True)
    (tmp_path / "f.pem").write_bytes(pem.cert)
    (tmp_path / "f.key").write_bytes(pem.key)
    forged = ssl.create_default_context(cafile=str(site.ca_file))
    forged.load_cert_chain(str(tmp_path / "f.pem"), str(tmp_path / "f.key"))
    assert _tls_handshake(port, forged).startswith("refused"), "another CA's cert: TLS done"
    operator = mesh.identity_of("operator")
    ctx = ssl.create_default_context(cafile=str(site.ca_file))
    ctx.load_cert_chain(str(operator.cert_file), str(operator.key_file))
    assert _tls_handshake(port, ctx).startswith("refused"), "an operator's cert: TLS done"
    # The same attempts by a real nats-server: no certificate, then another CA's.
    for name, cert in (("nocert", None), ("foreign", (tmp_path / "f.pem", tmp_path / "f.key"))):
        seed = site.seed_file.read_text().strip()
        with EvilLeaf(tmp_path / name, [leaf_url(mesh, "a")], cert, site.ca_file, seed) as evil:
            _leaf_refused(mesh, evil, ("TLS handshake error", "certificate"), settled)
    assert (_tls_handshake(port, site.ssl_context())) == "", "the edge's own certificate refused"
    stays(lambda: untouched(op, settled, baseline), 1.0, "a restart, or a copy moved")


@pytest.mark.parametrize("who", ["no nkey", "wrong nkey", "core site a", "operator"])
def test_only_an_edge_with_its_own_nkey_opens_a_leaf_link(
    mesh: LocalMesh,
    op: MeshConnection,
    settled: dict[str, int],
    baseline: dict[str, str],
    tmp_path: Path,
    who: str,
) -> None:
    """A site certificate is not enough: the leaf link is authorised as a user of the
    roster, and only an edge's site user may open one (a core site, in the roster but not
    an edge, is refused; an operator's certificate is not of the site CA)."""
    edge = mesh.identity_of(EDGE)
    holder = {"core site a": mesh.identity_of("a"), "operator": mesh.identity_of("operator")}
    ident = holder.get(who, edge)
    seed = {
        "no nkey": None,
        "wrong nkey": new_user_seed().decode().strip(),
    }.get(who, ident.seed_file.read_text().strip())
    urls = [leaf_url(mesh, c) for c in CORES]
    cert = (ident.cert_file, ident.key_file)
    with EvilLeaf(tmp_path / "evil", urls, cert, edge.ca_file, seed) as evil:
        markers = ("Authorization Violation", "authentication error", "TLS handshake error")
        line = _leaf_refused(mesh, evil, markers, settled)
        assert " - lid:" in line or "TLS" in line, line  # lid: a leaf connection
    stays(lambda: untouched(op, settled, baseline), 1.0, "a restart, or a copy moved")


def test_the_edge_itself_may_open_a_leaf_link(mesh: LocalMesh, tmp_path: Path) -> None:
    """The control row: e1's own certificate and nkey make a link (so the rows above were
    refused for what they lacked, not for being run from the test)."""
    edge = mesh.identity_of(EDGE)
    seed = edge.seed_file.read_text().strip()
    urls = [leaf_url(mesh, c) for c in CORES]
    with EvilLeaf(
        tmp_path / "evil", urls, (edge.cert_file, edge.key_file), edge.ca_file, seed
    ) as e:
        assert wait_until(lambda: [n for n in e.leafs() if n in CORES], 20)


# -- an edge whose owner lets everything through --------------------------------------------------


@pytest.fixture
def evil(mesh: LocalMesh, settled: dict[str, int], tmp_path: Path) -> Iterator[EvilLeaf]:
    """e1's owner's own server, linked to a core as e1 (its real credentials)."""
    edge = mesh.identity_of(EDGE)
    seed = edge.seed_file.read_text().strip()
    urls = [leaf_url(mesh, c) for c in CORES]
    cert = (edge.cert_file, edge.key_file)
    with EvilLeaf(tmp_path / "evil", urls, cert, edge.ca_file, seed) as server:
        wait_until(lambda: [n for n in server.leafs() if n in CORES], 20, message="no link")
        yield server


@pytest.fixture
def owner(evil: EvilLeaf) -> Iterator[MeshConnection]:
    """A client of the evil server: no credentials, no permissions, inbox ``_INBOX``."""
    conn = MeshConnection([evil.client_url], "owner").start()
    try:
        conn.wait_connected(10)
        yield conn
    finally:
        conn.close()


def _heartbeat(site: str) -> bytes:
    hb = Heartbeat(
        mesh=MESH, site=site, seq=1, incarnation="forged", mono=1.0, wall=1.0, interval=0.2
    )
    return wire.encode(hb)


def test_the_core_tells_an_edge_no_jetstream_inbox(
    mesh: LocalMesh, op: MeshConnection, evil: EvilLeaf
) -> None:
    """The leaf link learns the inboxes the edge may publish to: ask inboxes (to answer
    asks; a request's token is random), never a JetStream inbox (lease answers, KV watches:
    a deliver subject has no token, so knowing it was enough to forge a lease entry)."""
    snapshot(op, "a", mesh=MESH)  # an operator's ask inbox exists

    def learned() -> list[str] | None:
        subs = evil.interest()
        return subs if any(s.startswith(f"_INBOX.{MESH}.") for s in subs) else None

    subs: list[str] = wait_until(learned, 20, message=lambda: str(evil.interest()))
    inboxes = [s for s in subs if s.startswith("_INBOX.")]
    assert not [s for s in inboxes if "._js." in s or s.endswith("._js")], inboxes
    # Every other inbox it learned is a `ReplyTable`'s (<inbox>.<16 hex>.*), none nats-py's
    # (a request mux <inbox>.<nuid>.*, a watch's deliver subject <inbox>.<nuid>).
    ask_inbox = re.compile(rf"^_INBOX\.{MESH}\.(?:_op\.)?[A-Za-z0-9_-]+\.[0-9a-f]{{16}}\.\*$")
    others = [s for s in inboxes if not s.startswith(f"_INBOX.{MESH}.{EDGE}.")]
    assert others and all(ask_inbox.match(s) for s in others), others
    # The streams' own wildcards ($KV.<bucket>.>, $JS.API.>) are learned too: they are no
    # secret, and the core checks every message the link sends against e1's permissions
    # (the next test).


def test_an_owner_forwarding_everything_reaches_only_what_the_edge_may(
    mesh: LocalMesh,
    op: MeshConnection,
    evil: EvilLeaf,
    owner: MeshConnection,
    settled: dict[str, int],
    baseline: dict[str, str],
) -> None:
    """Through e1's leaf link, the owner publishes another site's heartbeat, asks and tells
    as another sender, writes and deletes a lease that is not e1's, purges and deletes the
    lease stream, writes another site's summary and the core list, and forges replies to
    every inbox it heard of. Nothing of it reaches an agent; what e1 may send as itself
    (a tell to a's run actor) reaches a's bridge, which refuses it and counts it."""
    # What the owner hears: only what e1 may subscribe to.
    heard: list[str] = []
    lock = threading.Lock()

    def on(msg: object) -> None:
        with lock:
            heard.append(getattr(msg, "subject", "?"))

    subs = [owner.subscribe(s, on) for s in (">", f"_INBOX.{MESH}.a.>", "$KV.>", "$JS.>")]
    run = "agent/workload/aonly/run"
    forged = [
        (subjects.heartbeat(MESH, "b"), _heartbeat("b")),
        (subjects.heartbeat(MESH, "zz"), _heartbeat("zz")),
        (subjects.events(MESH, "a"), b"forged"),
        *[
            (subjects.actor(MESH, "a", verb, sender, run), wire.encode(StartWorkload()))
            for verb in (subjects.ASK, subjects.TELL)
            for sender in ("a", "b", subjects.OPERATOR)
        ],
        (f"$KV.{BUCKET}.aonly", b'{"site":"e1","incarnation":"squat","token":1}'),
        (f"$JS.API.STREAM.PURGE.KV_{BUCKET}", b""),
        (f"$JS.API.STREAM.DELETE.KV_{BUCKET}", b""),
        (f"$JS.API.STREAM.MSG.DELETE.KV_{BUCKET}", b'{"seq":1}'),
        (f"$JS.API.STREAM.UPDATE.KV_{BUCKET}", b"{}"),
        (f"$KV.{sites_bucket(MESH)}.a", b"forged summary"),
        (f"$KV.{mesh_info_bucket(MESH)}.cores", b'["e1"]'),
    ]
    inboxes = [s for s in evil.interest() if s.startswith("_INBOX.") and s.endswith(".*")]
    forged += [(f"{s[:-2]}.{n}", b"forged reply") for s in inboxes for n in range(1, 200)]
    forged += [(f"_INBOX.{MESH}.a._js.x.1", b"forged"), (f"_INBOX.{MESH}._op.operator._js.1", b"")]
    before = rejected(op, "a")
    try:
        for subject, payload in forged:
            owner.publish(subject, payload)
        delete = {"KV-Operation": "DEL"}
        owner.run(lambda nc: nc.publish(f"$KV.{BUCKET}.aonly", b"", headers=delete), 5)
        # As itself, e1 may tell a: the bridge refuses a run actor and counts it.
        tell = subjects.actor(MESH, "a", subjects.TELL, EDGE, run)
        owner.publish(tell, wire.encode(FenceWorkload(reason="e1's owner")))
        owner.run(lambda nc: nc.flush(5), 10)
        wait_until(
            lambda: delta(rejected(op, "a"), before).get("not-exported", 0) >= 1,
            15,
            message=lambda: f"a's bridge never saw e1's tell: {delta(rejected(op, 'a'), before)}",
        )
        stays(lambda: untouched(op, settled, baseline), 2.0, "a restart, or a copy moved")
    finally:
        for sub in subs:
            sub.unsubscribe()
    moved = delta(rejected(op, "a"), before)
    assert moved == {"not-exported": 1}, moved
    peers = {p.site for p in snapshot(op, "a", mesh=MESH).peers}
    assert "zz" not in peers, peers
    with lock:
        seen = sorted(set(heard))
    # What came from the core (the owner's own publishes echo locally): e1's own lease
    # key, inbox and subjects, heartbeats, summaries; no other site's lease, ask or reply.
    own = {subject for subject, _ in forged} | {tell, f"$KV.{BUCKET}.aonly"}
    mine = (f"harmony.{MESH}.{EDGE}.", f"_INBOX.{MESH}.{EDGE}.")  # e1's own subjects, inbox
    others = [s for s in seen if s not in own and not s.startswith(mine)]
    bad = [
        s
        for s in others
        if s.startswith(("$JS.", f"_INBOX.{MESH}."))
        or ".ask." in s
        or ".tell." in s
        or (s.startswith("$KV.") and s != f"$KV.{lease_bucket(MESH, 'ledger')}.ledger")
    ]
    assert not bad, (bad, others)
