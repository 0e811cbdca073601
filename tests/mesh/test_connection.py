"""MeshConnection against a real nats-server: request/reply, tells, order, errors, reconnects.

Most tests run twice: with the fast paths (direct socket writes from the calling thread,
synchronous dispatch in nats-py's reader) and without them (nats-py's public API only), so
that the fallback stays correct too.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from nats.aio.msg import Msg
from support.nats_servers import Node
from support.waiting import wait_until

from harmony.mesh import wire
from harmony.mesh.connection import (
    FAST_PATHS,
    MeshConnection,
    MeshUnavailable,
    NoResponders,
    fast_paths_from,
)

pytestmark = pytest.mark.mesh


class ConnTestSeq(wire.Message):
    """A numbered message (test only)."""

    n: int
    src: str = ""


Factory = Callable[..., MeshConnection]


@pytest.fixture(params=["all", "none"])
def fast(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def connect(fast: str) -> Iterator[Factory]:
    """Factory: ``connect(node_or_url, name=...) -> MeshConnection`` (connected; closed at
    teardown), with this test's fast paths."""
    made: list[MeshConnection] = []

    def make(
        target: Node | str, name: str = "t", on_state: Callable[[str, str], None] | None = None
    ) -> MeshConnection:
        url = target if isinstance(target, str) else target.client_url
        conn = MeshConnection([url], name, on_state=on_state, reconnect_wait=0.1, fast_paths=fast)
        made.append(conn)
        conn.start()
        conn.wait_connected(10)
        return conn

    yield make
    for conn in reversed(made):
        conn.close()


def echo(conn: MeshConnection, subject: str, suffix: bytes = b"") -> None:
    """Answer every request on `subject` with its payload (+ suffix); wait until subscribed."""
    handle = conn.subscribe(subject, lambda m: conn.publish(m.reply, m.data + suffix))
    assert handle.ready.wait(10)


# --------------------------------------------------------------------------- request/reply


def test_request_reply(make_nats_server: Callable[..., Node], connect: Factory, fast: str) -> None:
    node = make_nats_server()
    server, client = connect(node, "server"), connect(node, "client")
    assert client.fast_paths == (FAST_PATHS if fast == "all" else frozenset())
    echo(server, "svc.echo", b"!")
    for i in range(50):
        assert client.request("svc.echo", f"hi {i}".encode(), timeout=5) == f"hi {i}!".encode()
    if fast == "all":
        # Requests and replies are written by the calling threads, except when the write lock
        # is busy at that instant (then the loop writes it): most, not necessarily all.
        assert client.stats["direct"] >= 40 and server.stats["direct"] >= 40, (
            client.stats,
            server.stats,
        )
    assert not client._replies.waiting


def test_concurrent_requests_from_many_threads(
    make_nats_server: Callable[..., Node], connect: Factory
) -> None:
    """Each thread gets its own replies: tokens match, nothing is lost or crossed."""
    node = make_nats_server()
    server, client = connect(node, "server"), connect(node, "client")
    echo(server, "svc.echo")
    errors: list[str] = []

    def worker(k: int) -> None:
        for i in range(200):
            payload = f"{k}:{i}".encode()
            got = client.request("svc.echo", payload, timeout=10)
            if got != payload:
                errors.append(f"{payload!r} -> {got!r}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert not client._replies.waiting


def test_request_timeout_and_late_reply(
    make_nats_server: Callable[..., Node], connect: Factory
) -> None:
    node = make_nats_server()
    server, client = connect(node, "server"), connect(node, "client")

    def late(msg: Msg) -> None:  # answers after the asker gave up (off the loop thread)
        threading.Timer(0.5, server.publish, args=(msg.reply, b"late")).start()

    assert server.subscribe("svc.slow", late).ready.wait(10)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match=r"svc\.slow"):
        client.request("svc.slow", b"x", timeout=0.2)
    assert 0.15 < time.monotonic() - t0 < 2.0
    assert not client._replies.waiting
    time.sleep(0.6)  # the late reply arrives and is dropped
    echo(server, "svc.echo")
    assert client.request("svc.echo", b"after", timeout=5) == b"after"


def test_no_responders(make_nats_server: Callable[..., Node], connect: Factory) -> None:
    client = connect(make_nats_server(), "client")
    t0 = time.monotonic()
    with pytest.raises(NoResponders, match=r"svc\.nobody"):
        client.request("svc.nobody", b"x", timeout=5)
    assert time.monotonic() - t0 < 2.0  # the server says so at once; no waiting for timeout
    assert not client._replies.waiting


def test_close_fails_waiting_requests(
    make_nats_server: Callable[..., Node], connect: Factory
) -> None:
    node = make_nats_server()
    server, client = connect(node, "server"), connect(node, "client")
    assert server.subscribe("svc.never", lambda m: None).ready.wait(10)
    outcome: list[BaseException] = []

    def ask() -> None:
        try:
            client.request("svc.never", b"x", timeout=30)
        except BaseException as e:
            outcome.append(e)

    t = threading.Thread(target=ask)
    t.start()
    wait_until(lambda: client._replies.waiting, 5, message="request never registered")
    client.close()
    t.join(10)
    assert not t.is_alive() and isinstance(outcome[0], MeshUnavailable)


# --------------------------------------------------------------------------- tells and order


def collect_frames(conn: MeshConnection, subject: str) -> tuple[list[int], list[int]]:
    """Subscribe to tell frames on `subject`; returns (numbers seen, frame sizes), live."""
    seen: list[int] = []
    frames: list[int] = []

    def on_frame(msg: Msg) -> None:
        msgs = wire.decode_many(msg.data)
        frames.append(len(msgs))
        seen.extend(m.n for m in msgs if isinstance(m, ConnTestSeq))

    assert conn.subscribe(subject, on_frame).ready.wait(10)
    return seen, frames


def test_tells_keep_order_and_share_frames(
    make_nats_server: Callable[..., Node], connect: Factory
) -> None:
    node = make_nats_server()
    receiver, sender = connect(node, "receiver"), connect(node, "sender")
    seen, frames = collect_frames(receiver, "t.tell")
    n = 20_000
    for i in range(n):
        sender.tell("t.tell", wire.encode(ConnTestSeq(n=i)))
    wait_until(lambda: len(seen) >= n, 30, message=lambda: f"got {len(seen)} of {n} tells")
    assert seen == list(range(n))
    assert len(frames) < n / 4, "a burst of tells should travel in shared frames"
    assert max(frames) > 1


def test_tells_and_publishes_from_one_thread_keep_order(
    make_nats_server: Callable[..., Node], connect: Factory
) -> None:
    """Queued tells and (possibly direct) publishes from one thread arrive in the order sent,
    also when they go to different subjects of one subscription."""
    node = make_nats_server()
    receiver, sender = connect(node, "receiver"), connect(node, "sender")
    seen: list[int] = []

    def on_msg(msg: Msg) -> None:
        if msg.subject.endswith(".tell"):
            seen.extend(m.n for m in wire.decode_many(msg.data) if isinstance(m, ConnTestSeq))
        else:
            m = wire.decode(msg.data)
            assert isinstance(m, ConnTestSeq)
            seen.append(m.n)

    assert receiver.subscribe("order.*", on_msg).ready.wait(10)
    n = 6000
    for i in range(n):
        payload = wire.encode(ConnTestSeq(n=i))
        if (i // 3) % 2:  # runs of three tells, then three publishes
            sender.tell("order.tell", payload)
        else:
            sender.publish("order.pub", payload)
        if i % 500 == 0:
            time.sleep(0.002)  # let the outbox drain now and then: both paths get used
    wait_until(lambda: len(seen) >= n, 30, message=lambda: f"got {len(seen)} of {n}")
    assert seen == list(range(n))


def test_partial_socket_writes_keep_the_stream_intact(
    make_nats_server: Callable[..., Node], connect: Factory, fast: str
) -> None:
    """With a tiny socket send buffer the kernel takes only part of a big direct write; the
    rest must go out before anything else, or the NATS protocol stream would be corrupt.
    (Payloads of 8-24 KB: every one is a partial write into a 4 KB buffer, and the whole
    blast stays well inside the client's stale-connection window of 2 unanswered 5 s
    pings, which a 25 MB blast under CI load once outlasted: a PONG queued behind it.)"""
    node = make_nats_server()
    states: list[tuple[str, object]] = []
    receiver = connect(node, "receiver")
    sender = connect(node, "sender", on_state=lambda kind, d: states.append((kind, d)))
    gate = sender._gate.current
    if fast == "all":
        assert gate is not None
        gate.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    got: dict[str, list[int]] = {}
    lock = threading.Lock()

    def on_msg(msg: Msg) -> None:
        src, n, size = msg.data[:40].split(b"|")[:3]
        body = msg.data[40:]
        assert len(body) == int(size) and body == bytes([int(n) % 251]) * int(size)
        with lock:
            got.setdefault(src.decode(), []).append(int(n))

    assert receiver.subscribe("bulk", on_msg).ready.wait(10)

    def payload(src: str, i: int) -> bytes:
        size = 8_000 + (i * 997) % 16_000
        return f"{src}|{i}|{size}|".encode().ljust(40, b".") + bytes([i % 251]) * size

    def idle() -> bool:  # nothing queued anywhere: the next publish is written directly
        if gate is None:
            return True
        return (
            not sender._outbox.items and not gate.carry and gate.stream.get_write_buffer_size() == 0
        )

    def blast(src: str) -> None:
        for i in range(150):
            sender.publish("bulk", payload(src, i))

    # One thread, waiting for the socket to drain before each publish: direct, partial writes.
    for i in range(40):
        wait_until(idle, 10, interval=0.001)
        sender.publish("bulk", payload("solo", i))
    # Four threads at once: direct, partial and queued writes mixed.
    threads = [threading.Thread(target=blast, args=(f"s{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    total = 40 + 4 * 150
    wait_until(
        lambda: sum(map(len, got.values())) >= total,
        30,
        message=lambda: f"got {sum(map(len, got.values()))} of {total}; states {states}",
    )
    assert got["solo"] == list(range(40))
    assert all(got[f"s{k}"] == list(range(150)) for k in range(4))
    assert "disconnected" not in [kind for kind, _ in states], states
    if fast == "all":
        assert sender.stats["partial"] > 0, sender.stats


# --------------------------------------------------------------------------- failures


def test_reconnect_keeps_subscriptions(
    make_nats_server: Callable[..., Node], connect: Factory, fast: str
) -> None:
    node = make_nats_server(supervise=True)
    states: list[str] = []
    server = connect(node, "server", on_state=lambda kind, _d: states.append(kind))
    client = connect(node, "client")
    echo(server, "svc.echo")
    seen, _frames = collect_frames(server, "t.tell")
    assert client.request("svc.echo", b"before", timeout=5) == b"before"

    node.server.kill()  # the supervisor starts it again on the same port
    wait_until(lambda: "reconnected" in states, 30, message=lambda: f"states {states}")

    def answers() -> bool:
        return client.request("svc.echo", b"after", timeout=1) == b"after"

    wait_until(answers, 30, interval=0.2, message="no reply after the server came back")
    client.tell("t.tell", wire.encode(ConnTestSeq(n=7)))
    wait_until(lambda: 7 in seen, 10, message="tell after reconnect not delivered")
    if fast == "all":  # direct writes are back on the new socket
        wait_until(
            lambda: server._gate.current is not None and client._gate.current is not None, 10
        )
        before = client.stats["direct"]
        assert client.request("svc.echo", b"again", timeout=5) == b"again"
        assert client.stats["direct"] > before


def test_failing_callback_does_not_break_the_connection(
    make_nats_server: Callable[..., Node], connect: Factory
) -> None:
    node = make_nats_server()
    receiver, sender = connect(node, "receiver"), connect(node, "sender")
    got: list[bytes] = []

    def flaky(msg: Msg) -> None:
        if msg.data == b"boom":
            raise RuntimeError("callback failed")
        got.append(msg.data)

    assert receiver.subscribe("flaky", flaky).ready.wait(10)
    for data in (b"1", b"boom", b"2"):
        sender.publish("flaky", data)
    wait_until(lambda: got == [b"1", b"2"], 10, message=lambda: f"got {got}")
    assert receiver.connected


def test_oversized_publish_is_dropped_and_the_connection_stays(
    make_nats_server: Callable[..., Node], connect: Factory
) -> None:
    """The server disconnects a client that exceeds its max_payload (1 MiB by default): such a
    publish is refused on our side, logged, and later publishes still arrive."""
    node = make_nats_server()
    states: list[str] = []
    receiver = connect(node, "receiver")
    sender = connect(node, "sender", on_state=lambda kind, _d: states.append(kind))
    got: list[int] = []
    assert receiver.subscribe("big", lambda m: got.append(len(m.data))).ready.wait(10)
    sender.publish("big", b"x" * (2 << 20))
    sender.publish("big", b"small")
    wait_until(lambda: got == [5], 10, message=lambda: f"got {got}")
    # Big frames of tells stay within the limit too.
    seen, _frames = collect_frames(receiver, "t.big")
    for i in range(1500):
        sender.tell("t.big", wire.encode(ConnTestSeq(n=i, src="y" * 2000)))
    wait_until(lambda: len(seen) >= 1500, 20, message=lambda: f"got {len(seen)} of 1500")
    assert seen == list(range(1500))
    assert "disconnected" not in states


def test_unsubscribe_stops_delivery(
    make_nats_server: Callable[..., Node], connect: Factory
) -> None:
    node = make_nats_server()
    receiver, sender = connect(node, "receiver"), connect(node, "sender")
    got: list[bytes] = []
    handle = receiver.subscribe("u", lambda m: got.append(m.data))
    assert handle.ready.wait(10)
    sender.publish("u", b"1")
    wait_until(lambda: got == [b"1"], 10)
    handle.unsubscribe()
    wait_until(lambda: not receiver._subscriptions.live(handle.index), 10)
    receiver.run(lambda nc: nc.flush(timeout=5), 10)
    sender.publish("u", b"2")
    echo(receiver, "svc.echo")  # a round trip through the server after the publish
    assert sender.request("svc.echo", b"x", timeout=5) == b"x"
    assert got == [b"1"]


# --------------------------------------------------------------------------- configuration


def test_fast_paths_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fast_paths_from("all") == FAST_PATHS
    assert fast_paths_from("none") == fast_paths_from("0") == frozenset()
    assert fast_paths_from("write") == {"write"}
    assert fast_paths_from(" dispatch , write ") == {"dispatch", "write"}
    assert fast_paths_from(["write"]) == {"write"}
    with pytest.raises(ValueError, match="unknown fast path"):
        fast_paths_from("warp")
    monkeypatch.setenv("HARMONY_MESH_FAST_PATHS", "none")
    assert fast_paths_from(None) == frozenset()
    monkeypatch.delenv("HARMONY_MESH_FAST_PATHS")
    assert fast_paths_from(None) == FAST_PATHS
