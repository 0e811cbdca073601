"""The fast paths over a real mutual-TLS nats-server (harmony/mesh/tls.py, fastpaths.py).

Every test of test_connection.py runs here again with TLS on the client port (`verify: true`,
so each connection shows a client certificate): with the fast paths (our TLS layer, direct
writes that encrypt on the calling thread) and without them (nats-py's own TLS). The tests
below add what only TLS has: many threads encrypting while the loop decrypts (one SSL
object, serialised by the write lock; a concurrent use would corrupt a record and the server
would drop us), refused connections, and the fallback to nats-py's TLS.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from nats.aio.msg import Msg
from support.nats_servers import Node
from support.waiting import wait_until

from harmony.mesh import tls_hooks
from harmony.mesh.connection import MeshConnection, MeshUnavailable
from harmony.mesh.tls import TlsTransport

# Imported so that they run here too, with this module's TLS fixtures.
from .test_connection import (  # noqa: F401
    ConnTestSeq,
    test_close_fails_waiting_requests,
    test_concurrent_requests_from_many_threads,
    test_failing_callback_does_not_break_the_connection,
    test_no_responders,
    test_oversized_publish_is_dropped_and_the_connection_stays,
    test_partial_socket_writes_keep_the_stream_intact,
    test_reconnect_keeps_subscriptions,
    test_request_reply,
    test_request_timeout_and_late_reply,
    test_tells_and_publishes_from_one_thread_keep_order,
    test_tells_keep_order_and_share_frames,
    test_unsubscribe_stops_delivery,
)

pytestmark = pytest.mark.mesh

Factory = Callable[..., MeshConnection]


@dataclass(frozen=True)
class TlsFiles:
    ca: trustme.CA
    dir: Path

    def server_conf(self, name: str = "server") -> str:
        d = self.dir
        return (
            "tls {\n"
            f'  cert_file: "{d / name}.crt"\n'
            f'  key_file: "{d / name}.key"\n'
            f'  ca_file: "{d}/ca.crt"\n'
            "  verify: true\n"
            "  timeout: 5\n"
            "}\n"
        )

    def client_context(self, with_cert: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self.ca.configure_trust(ctx)
        if with_cert:
            self.ca.issue_cert("client.harmony.test").configure_cert(ctx)
        return ctx


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    """A CA, a server certificate for the loopback addresses and one for ``nats.test``."""
    ca = trustme.CA()
    d = tmp_path / "tls"
    d.mkdir()
    ca.cert_pem.write_to_path(str(d / "ca.crt"))
    for name, hosts in (("server", ("127.0.0.1", "localhost")), ("named", ("nats.test",))):
        cert = ca.issue_cert(*hosts)
        cert.cert_chain_pems[0].write_to_path(str(d / f"{name}.crt"))
        cert.private_key_pem.write_to_path(str(d / f"{name}.key"))
    return TlsFiles(ca, d)


@pytest.fixture
def make_nats_server(
    make_nats_server: Callable[..., Node], tls_files: TlsFiles
) -> Callable[..., Node]:
    """conftest's factory, with mutual TLS on the client port."""

    def make(name: str = "solo", supervise: bool = True, **spec_fields: Any) -> Node:
        spec_fields.setdefault("extra_conf", tls_files.server_conf())
        return make_nats_server(name, supervise, **spec_fields)

    return make


@pytest.fixture(params=["all", "none"])
def fast(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def connect(fast: str, tls_files: TlsFiles) -> Iterator[Factory]:
    """Like test_connection's `connect`, over TLS with a client certificate."""
    made: list[MeshConnection] = []

    def make(
        target: Node | str,
        name: str = "t",
        on_state: Callable[[str, str], None] | None = None,
        **kw: Any,
    ) -> MeshConnection:
        url = target if isinstance(target, str) else target.client_url
        kw.setdefault("tls", tls_files.client_context())
        kw.setdefault("fast_paths", fast)
        conn = MeshConnection([url], name, on_state=on_state, reconnect_wait=0.1, **kw)
        made.append(conn)
        conn.start()
        conn.wait_connected(10)
        return conn

    yield make
    for conn in reversed(made):
        conn.close()


def test_fast_paths_use_our_tls_layer(
    make_nats_server: Callable[..., Node], connect: Factory, fast: str
) -> None:
    node = make_nats_server()
    conn = connect(node, "c")
    if fast == "all":
        gate = conn._gate.current
        assert gate is not None and isinstance(gate.tls, TlsTransport)
        assert gate.tls.sslobj.version() in ("TLSv1.2", "TLSv1.3")
        assert gate.tls.sslobj.getpeercert()  # the server's certificate was verified
    else:
        assert conn._gate.current is None


def test_threads_encrypt_while_the_loop_decrypts(
    make_nats_server: Callable[..., Node], connect: Factory, fast: str
) -> None:
    """One SSL object, many threads: 8 threads publish (direct and queued writes, each
    encrypting on its own thread) while the same connection decrypts a flood coming the
    other way and answers requests. Everything arrives, in order per sender, and the TLS
    session never breaks (a record sealed out of order or by two threads at once would make
    the server close the connection)."""
    node = make_nats_server()
    states: list[str] = []
    hub = connect(node, "hub", on_state=lambda kind, _d: states.append(kind))
    peer = connect(node, "peer", on_state=lambda kind, _d: states.append(kind))
    lock = threading.Lock()
    at_peer: dict[str, list[int]] = {}
    at_hub: list[int] = []

    def on_peer(msg: Msg) -> None:
        src, n = msg.data.split(b"|")[:2]
        with lock:
            at_peer.setdefault(src.decode(), []).append(int(n))

    assert peer.subscribe("h.>", on_peer).ready.wait(10)
    assert hub.subscribe("flood", lambda m: at_hub.append(int(m.data[:8]))).ready.wait(10)
    assert peer.subscribe("echo", lambda m: peer.publish(m.reply, m.data)).ready.wait(10)
    n, k = 1500, 8
    errors: list[str] = []

    def sender(src: str) -> None:
        for i in range(n):
            # Sizes vary so that records of all sizes interleave (up to several records).
            hub.publish(f"h.{src}", f"{src}|{i}|".encode() + b"x" * (i * 37 % 20_000))
            if i % 100 == 0:
                got = hub.request("echo", f"{src}{i}".encode(), timeout=10)
                if got != f"{src}{i}".encode():
                    errors.append(f"{src}: {got!r}")

    def flood() -> None:
        for i in range(n * 4):
            peer.publish("flood", b"%08d" % i + b"y" * (i % 3000))

    threads = [threading.Thread(target=sender, args=(f"s{j}",)) for j in range(k)]
    threads.append(threading.Thread(target=flood))
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    total = n * k
    wait_until(
        lambda: sum(map(len, at_peer.values())) >= total and len(at_hub) >= n * 4,
        60,
        message=lambda: (
            f"peer got {sum(map(len, at_peer.values()))} of {total}, "
            f"hub {len(at_hub)} of {n * 4}; states {states}"
        ),
    )
    assert not errors
    assert all(at_peer[f"s{j}"] == list(range(n)) for j in range(k))
    assert at_hub == list(range(n * 4))
    assert "disconnected" not in states, states
    if fast == "all":
        assert hub.stats["direct"] > 0, hub.stats


def test_remote_ask_and_tell_through_the_bridge(
    make_nats_server: Callable[..., Node], connect: Factory
) -> None:
    """The bridge itself over TLS: asks answered by an actor's thread, tells in order."""
    import pykka

    from harmony.mesh.remote import ActorDirectory, Bridge, RemoteAsk, RemoteRef

    seen: list[int] = []

    class Counter(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> Any:
            if isinstance(message, RemoteAsk):
                message.reply(message.message)  # echo
            elif isinstance(message, ConnTestSeq):
                seen.append(message.n)

    node = make_nats_server()
    site, caller = connect(node, "site"), connect(node, "caller")
    directory = ActorDirectory()
    actor = Counter.start()
    try:
        directory.register("agent/counter", actor)
        bridge = Bridge(site, "m", "a", directory)
        bridge.start()
        assert bridge.wait_ready(10)
        ref = RemoteRef(caller, "m", "a", "agent/counter", 5.0, sender="b")
        for i in range(300):
            assert ref.ask(ConnTestSeq(n=i, src="ask")) == ConnTestSeq(n=i, src="ask")
        for i in range(5000):
            ref.tell(ConnTestSeq(n=i))
        wait_until(lambda: len(seen) >= 5000, 30, message=lambda: f"{len(seen)} of 5000")
        assert seen == list(range(5000))
    finally:
        actor.stop()


def test_a_client_without_certificate_is_refused(
    make_nats_server: Callable[..., Node], tls_files: TlsFiles, fast: str
) -> None:
    node = make_nats_server()
    conn = MeshConnection(
        [node.client_url], "anon", tls=tls_files.client_context(with_cert=False), fast_paths=fast
    ).start()
    try:
        with pytest.raises(MeshUnavailable):
            conn.wait_connected(3)
    finally:
        conn.close()


def test_a_tls_client_refuses_a_server_without_tls(
    make_nats_server: Callable[..., Node], tls_files: TlsFiles, fast: str
) -> None:
    """No downgrade: nats-py would start TLS only if the server's INFO (sent in the clear)
    asks for it. A client given a TLS context never talks in the clear, even to a server
    that offers no TLS (or to someone in the path who rewrote INFO)."""
    plain = make_nats_server(extra_conf="")
    conn = MeshConnection(
        [plain.client_url], "strict", tls=tls_files.client_context(), fast_paths=fast
    ).start()
    try:
        with pytest.raises(MeshUnavailable):
            conn.wait_connected(3)
        assert conn.nc is None or not conn.nc.is_connected
    finally:
        conn.close()


def test_tls_hostname_names_the_server_to_verify(
    make_nats_server: Callable[..., Node],
    tls_files: TlsFiles,
    connect: Factory,
    fast: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server whose certificate names only ``nats.test``: refused when reached as
    127.0.0.1 (and tried again and again: a failed handshake must not hang the connection
    loop), accepted with ``tls_hostname="nats.test"``."""
    node = make_nats_server(extra_conf=tls_files.server_conf("named"))
    caplog.set_level(logging.DEBUG, logger="harmony.mesh.connection")
    conn = MeshConnection(
        [node.client_url], "wrong", tls=tls_files.client_context(), fast_paths=fast
    ).start()

    def failures() -> int:
        return sum("CERTIFICATE_VERIFY_FAILED" in r.getMessage() for r in caplog.records)

    try:
        wait_until(lambda: failures() >= 3, 15, message=lambda: f"{failures()} attempts")
        assert not conn.connected
    finally:
        conn.close()
    good = connect(node, "good", tls_hostname="nats.test")
    assert good.subscribe("x", lambda m: good.publish(m.reply, b"ok")).ready.wait(10)
    assert good.request("x", b"", timeout=5) == b"ok"


def test_unexpected_nats_py_falls_back_to_its_own_tls(
    make_nats_server: Callable[..., Node], connect: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If nats-py's internals are not what the TLS layer expects, nats-py's TLS runs and
    publishes go through the loop: slower, still correct."""
    monkeypatch.setattr(tls_hooks, "tls_supported", lambda: False)
    node = make_nats_server()
    a = connect(node, "a", fast_paths="all")
    b = connect(node, "b", fast_paths="all")
    assert a._gate.current is None and b._gate.current is None
    seen: list[int] = []
    assert b.subscribe("s", lambda m: seen.append(int(m.data))).ready.wait(10)
    assert b.subscribe("e", lambda m: b.publish(m.reply, m.data)).ready.wait(10)
    for i in range(200):
        a.publish("s", str(i).encode())
    assert a.request("e", b"hi", timeout=5) == b"hi"
    wait_until(lambda: len(seen) >= 200, 10)
    assert seen == list(range(200))
    assert a.stats["direct"] == 0


class _BrokenSocket:
    """Stands in for the gate's socket: the kernel refuses the next write (EPIPE)."""

    def send(self, data: bytes) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def close(self) -> None:
        pass


@pytest.mark.parametrize("fast", ["all"])  # direct writes only: the others never seal
def test_a_sealed_but_unsent_write_drops_the_session_and_the_connection_recovers(
    make_nats_server: Callable[..., Node], connect: Factory, fast: str
) -> None:
    """Records sealed but not sent put the TLS session ahead of the stream: it must never be
    used again. The connection drops it, reconnects with a new session, and direct writes
    work again on that one."""
    node = make_nats_server()
    states: list[str] = []
    sender = connect(node, "sender", on_state=lambda kind, _d: states.append(kind))
    receiver = connect(node, "receiver")
    got: list[bytes] = []
    assert receiver.subscribe("r", lambda m: got.append(m.data)).ready.wait(10)
    assert receiver.subscribe("e", lambda m: receiver.publish(m.reply, m.data)).ready.wait(10)
    gate = sender._gate.current
    assert gate is not None and gate.tls is not None
    old_session = gate.tls
    real_sock, gate.sock = gate.sock, _BrokenSocket()  # type: ignore[assignment]
    try:
        sender.publish("r", b"lost-or-late")  # sealed, then the send fails
    finally:
        real_sock.close()
    assert old_session.broken is not None
    wait_until(lambda: "reconnected" in states, 30, message=lambda: f"states {states}")
    wait_until(
        lambda: sender._gate.current is not None and sender._gate.current.tls is not old_session,
        10,
        message="no new TLS session",
    )
    before = sender.stats["direct"]
    assert sender.request("e", b"again", timeout=5) == b"again"
    sender.publish("r", b"after")
    wait_until(lambda: b"after" in got, 10, message=lambda: f"got {got}")
    assert sender.stats["direct"] > before
