"""The connection thread: one asyncio loop per process owns the nats-py connection.

Actors are threads; nats-py is asyncio. Everything an actor asks of NATS goes through the
thread-safe methods here. Nothing here ever blocks the loop, and subscription callbacks run
on the loop, so they must not block either: they decode and `tell`.

Publishes from any thread go to one outbox that the loop drains in order. A burst of tells
to one subject leaves as one NATS message (see `wire.frame_tells`), which is what lets remote
tells keep up with local Pykka tells.

Fast paths (measured in BENCHMARKS.md; each one uses nats-py internals and falls back to the
public API when those are not what we expect, or when ``HARMONY_MESH_FAST_PATHS`` says so):

``write``
    A publish that finds nothing queued ahead of it (no outbox, nothing pending inside nats-py
    or in the transport's buffer) is written to the socket by the calling thread itself,
    under a lock that every other writer of that socket also takes (we wrap the transport's
    write methods). It saves waking the loop thread for every request and every reply: a
    thread hand-over on each side of a remote ask, the largest cost we could remove. Order
    is kept: a publish only goes direct when everything published before it is already in
    the socket. When the lock is busy the publish is queued instead (so nothing ever waits
    for it but the loop, briefly), and the loop writes the queue to the socket itself rather
    than through nats-py's flusher task.
``dispatch``
    Subscription callbacks are called by nats-py's reader as it parses each message, instead
    of through a per-subscription asyncio.Queue and task: one task switch less per message,
    and callbacks of different subscriptions see messages in wire order.

With no fast path (``HARMONY_MESH_FAST_PATHS=none``) only nats-py's public API is used: the
safe fallback if a nats-py upgrade changes what these paths rely on. They also switch
themselves off where they do not apply (TLS, WebSocket, an unexpected nats-py).

Waiting for a reply uses a bare `threading.Lock` (see `_Reply`), cheaper to release from the
loop and to wake on than a `concurrent.futures.Future`.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import inspect
import itertools
import logging
import os
import secrets
import socket
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar, cast

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.transport import TcpTransport
from nats.protocol.command import pub_cmd

from harmony.mesh import wire

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_FRAME_ITEMS = 2048
MAX_FRAME_BYTES = 512 * 1024
# The loop writes the outbox itself while the transport buffers less than this; above it,
# publishes go through nats-py (which waits for the socket to drain: backpressure).
LOOP_WRITE_LIMIT = 1 << 20
# Larger publishes are never written by the calling thread: a big write is more likely to be
# partial, and it holds the write lock longer. They go through the loop.
THREAD_WRITE_MAX = 64 * 1024

FAST_PATHS_ENV = "HARMONY_MESH_FAST_PATHS"
FAST_PATHS = frozenset({"write", "dispatch"})


class NoResponders(Exception):
    """A request went to a subject nobody listens on (the site or actor is not there)."""


class MeshUnavailable(Exception):
    """NATS could not be reached (yet); the connection keeps trying in the background."""


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()


def fast_paths_from(spec: str | Iterable[str] | None) -> frozenset[str]:
    """The fast paths to use: None reads ``HARMONY_MESH_FAST_PATHS`` (default: all).

    A string is ``all``, ``none`` (or ``0``) or a comma list such as ``write,dispatch``.
    """
    if spec is None:
        spec = os.environ.get(FAST_PATHS_ENV, "all")
    if isinstance(spec, str):
        spec = spec.strip().lower()
        if spec in ("", "all", "1"):
            return FAST_PATHS
        if spec in ("none", "0"):
            return frozenset()
        spec = [s.strip() for s in spec.split(",") if s.strip()]
    chosen = frozenset(spec)
    unknown = chosen - FAST_PATHS
    if unknown:
        raise ValueError(f"unknown fast path(s) {sorted(unknown)}; known: {sorted(FAST_PATHS)}")
    return chosen


# ---------------------------------------------------------------------- synchronous dispatch
_RAW = "_harmony_raw_callback"
_WRAPPED = "_harmony_write_lock"


def _can_dispatch_raw() -> bool:
    """Whether this nats-py has the internals `_RawDispatchClient` relies on (2.x has)."""
    method = getattr(Client, "_process_msg", None)
    if method is None or not all(
        hasattr(Client, name) for name in ("_build_message", "_process_headers")
    ):
        return False
    params = list(inspect.signature(method).parameters)
    return params == ["self", "sid", "subject", "reply", "data", "headers"]


class _RawDispatchClient(Client):
    """A nats-py client whose reader calls our subscription callbacks directly.

    nats-py puts every message in its subscription's asyncio.Queue, and a task per
    subscription awaits it and calls the callback. Our callbacks never block (rule 2), so we
    call them right where the parser hands the message over. Subscriptions whose callback
    does not carry the `_RAW` attribute (and all JetStream ones) take nats-py's usual path.
    """

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
    ) -> None:  # `headers` is None for a message without headers, despite nats-py's hint
        sub = self._subs.get(sid)
        raw = getattr(getattr(sub, "_cb", None), _RAW, None)
        if sub is None or raw is None or getattr(sub, "_jsi", None) is not None:
            await super()._process_msg(sid, subject, reply, data, headers)
            return
        sub._received += 1
        self.stats["in_msgs"] += 1
        self.stats["in_bytes"] += len(data)
        hdr = await self._process_headers(headers) if headers else None
        raw(self._build_message(sid, subject, reply, data, hdr))


# ---------------------------------------------------------------------- writes from any thread
class _Gate:
    """The socket of the current connection, writable from any thread under the write lock.

    Every write to this socket holds `MeshConnection._wlock`: ours (`_write_now`, the
    loop's outbox) and nats-py's, whose transport methods we wrap (`_wrap_transport`). Our
    own writes use a duplicate of the socket's file descriptor, so a descriptor closed by the
    loop meanwhile can never be reused under us. If the kernel takes only part of a direct
    write, the rest waits in `carry` and goes out first, before any other write.

    nats-py keeps one `TcpTransport` object across reconnects and gives it a new stream
    each time, so a gate stands for one stream (`writer`), not for the transport object.
    """

    def __init__(self, transport: TcpTransport, max_payload: int) -> None:
        writer = transport._io_writer
        assert writer is not None
        self.transport = transport
        self.writer = writer
        self.stream = writer.transport  # the uvloop/asyncio transport under nats-py's
        fd = self.stream.get_extra_info("socket").fileno()
        self.sock = socket.socket(fileno=os.dup(fd))
        self.sock.setblocking(False)
        self.carry: list[bytes] = []
        self.open = True
        # Bigger publishes go through the loop, which checks the server's payload limit.
        self.write_max = min(THREAD_WRITE_MAX, max_payload)

    def current(self, nc: Client) -> bool:
        return nc._transport is self.transport and self.transport._io_writer is self.writer

    def flush_carry_locked(self) -> None:
        """On the loop, with the lock held: hand the rest of a partial direct write to the
        stream, which buffers it until the socket drains."""
        if self.carry:
            if self.open and not self.stream.is_closing():
                self.stream.writelines(self.carry)
            self.carry.clear()

    def close_locked(self) -> None:
        if self.open:
            self.open = False
            self.carry.clear()
            self.sock.close()


class _Reply:
    """The one reply a request waits for: a lock that the loop releases once it is set.

    Cheaper than a `concurrent.futures.Future` (no Condition, no waiter list) on both sides
    of the one hand-over that a request needs.
    """

    __slots__ = ("_done", "data", "error")

    def __init__(self) -> None:
        self._done = threading.Lock()
        self._done.acquire()
        self.data = b""
        self.error: BaseException | None = None

    def set(self, data: bytes, error: BaseException | None = None) -> None:
        """Called once (whoever pops the request's token from `_pending` calls it)."""
        self.data = data
        self.error = error
        self._done.release()

    def wait(self, timeout: float | None) -> bool:
        return self._done.acquire(timeout=-1 if timeout is None else max(0.0, timeout))


class _Outbox:
    """Publishes queued by any thread, drained in order by the loop.

    Entries are (subject, reply, payload, is_tell). Consecutive tells to the same subject are
    framed together; everything else is sent as it came. `moving` counts drains that have
    taken entries out but not yet handed them all to nats-py: direct writes wait for those.
    """

    def __init__(self) -> None:
        self.items: collections.deque[tuple[str, str, bytes, bool]] = collections.deque()
        self.kicked = False
        self.moving = 0


class MeshConnection:
    """A NATS connection on its own loop thread, usable from every thread.

    `start()` returns once the loop runs; the connection is made (and remade, forever) in
    the background. Use `wait_connected()` where a caller must not go on without NATS.
    """

    def __init__(
        self,
        servers: list[str],
        name: str,
        *,
        on_state: Callable[[str, str], None] | None = None,
        reconnect_wait: float = 0.25,
        fast_paths: str | Iterable[str] | None = None,
    ) -> None:
        self.servers = list(servers)
        self.name = name
        self._on_state = on_state
        self._reconnect_wait = reconnect_wait
        fast = fast_paths_from(fast_paths)
        self._write_fast = "write" in fast
        self._dispatch_fast = "dispatch" in fast and _can_dispatch_raw()
        self.loop = _new_loop()
        self._thread = threading.Thread(target=self._run_loop, name=f"nats-{name}", daemon=True)
        self.nc: Client | None = None
        self._connected = threading.Event()
        self._closed = False
        self._outbox = _Outbox()
        self._wake: asyncio.Event | None = None
        self._wlock = threading.Lock()
        self._gate: _Gate | None = None
        self._subs: list[tuple[str, Callable[[Msg], None], str]] = []
        self._live_subs: dict[int, Any] = {}
        self._handles: list[Subscription] = []
        self._inbox = f"_INBOX.{secrets.token_hex(8)}"
        self._pending: dict[str, _Reply] = {}
        self._collectors: dict[str, Callable[[bytes], None]] = {}
        self._tokens = itertools.count(1)  # next() is atomic: any thread may take one
        self._tasks: set[asyncio.Task[Any]] = set()
        # How publishes left: written by the calling thread (`direct`), of which the kernel
        # took only part at first (`partial`), or through the loop (`queued`).
        self.stats = {"direct": 0, "partial": 0, "queued": 0}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> MeshConnection:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def wait_connected(self, timeout: float) -> None:
        if not self._connected.wait(timeout):
            raise MeshUnavailable(
                f"no NATS server answered within {timeout:g} s (tried {', '.join(self.servers)})"
            )

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def fast_paths(self) -> frozenset[str]:
        """The fast paths in use (see the module's doc)."""
        return frozenset(
            name
            for name, on in (("write", self._write_fast), ("dispatch", self._dispatch_fast))
            if on
        )

    def close(self, timeout: float = 5.0) -> None:
        """Flush what is queued, close the connection, stop the loop thread."""
        if self._closed or not self._thread.is_alive():
            self._closed = True
            return
        self._closed = True
        fut = asyncio.run_coroutine_threadsafe(self._close(), self.loop)
        with contextlib.suppress(Exception):
            fut.result(timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        with contextlib.suppress(Exception):
            self.loop.close()

    async def _start(self) -> None:
        self._wake = asyncio.Event()
        self._spawn(self._connect_forever())
        self._spawn(self._drain_outbox())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _state(self, kind: str, detail: str = "") -> None:
        if self._on_state is not None:
            try:
                self._on_state(kind, detail)
            except Exception:  # a broken observer must not break the connection
                log.exception("connection state callback failed")

    async def _connect_forever(self) -> None:
        attempt = 0
        while not self._closed:
            attempt += 1
            nc = _RawDispatchClient() if self._dispatch_fast else Client()
            try:
                await nc.connect(
                    servers=self.servers,
                    name=self.name,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,  # an agent never gives up
                    reconnect_time_wait=self._reconnect_wait,  # type: ignore[arg-type]  # a float works
                    connect_timeout=2,
                    ping_interval=5,
                    max_outstanding_pings=2,
                    dont_randomize=True,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    closed_cb=self._on_closed,
                )
            except Exception as e:
                if attempt == 1 or attempt % 20 == 0:
                    log.warning("cannot reach NATS at %s: %s (retrying)", self.servers, e)
                self._state("unreachable", str(e))
                await asyncio.sleep(self._reconnect_wait)
                continue
            self.nc = nc
            await nc.subscribe(f"{self._inbox}.*", cb=self._callback(self._on_reply, "inbox"))
            for i in range(len(self._subs)):
                self._ensure_sub(i)
            self._open_gate()
            self._connected.set()
            self._state("connected", nc.connected_url.netloc if nc.connected_url else "")
            if self._outbox.items:  # queued before we were connected
                self._kick()
            return

    async def _on_error(self, e: Exception) -> None:
        log.debug("nats error: %s", e)

    async def _on_disconnected(self) -> None:
        self._connected.clear()
        self._close_gate()
        self._state("disconnected")

    async def _on_reconnected(self) -> None:
        self._open_gate()
        self._connected.set()
        url = self.nc.connected_url.netloc if self.nc and self.nc.connected_url else ""
        self._state("reconnected", url)
        if self._outbox.items:
            self._kick()

    async def _on_closed(self) -> None:
        self._connected.clear()
        self._close_gate()

    async def _close(self) -> None:
        await self._flush_outbox()
        self._close_gate()
        for t in list(self._tasks):
            t.cancel()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.drain(), 2)
            with contextlib.suppress(Exception):
                await self.nc.close()
        for token in list(self._pending):
            reply = self._pending.pop(token, None)
            if reply is not None:
                reply.set(b"", MeshUnavailable("the mesh connection was closed"))

    # ------------------------------------------------------------------ the write gate
    def _open_gate(self) -> None:
        """On the loop, once (re)connected: let every thread write to the new socket."""
        self._close_gate()
        nc = self.nc
        if not self._write_fast or nc is None:
            return
        transport = nc._transport
        # Plain TCP only: TLS and WebSocket transports frame the bytes themselves.
        if type(transport) is not TcpTransport or transport._io_writer is None:
            return
        stream = transport._io_writer.transport
        if stream.get_extra_info("sslcontext") is not None or stream.is_closing():
            return
        try:
            self._wrap_transport(transport)
            gate = _Gate(transport, nc.max_payload)
        except (OSError, AttributeError) as e:
            log.warning("direct socket writes unavailable (%s); using nats-py's writer", e)
            return
        with self._wlock:
            self._gate = gate

    def _wrap_transport(self, transport: TcpTransport) -> None:
        """Make nats-py's writes to `transport` take the write lock (once per object).

        Instance attributes shadow the class's methods; nats-py calls them as before. A write
        first flushes the carry of a partial direct write, so bytes never interleave.
        """
        if getattr(transport, _WRAPPED, False):
            return
        lock = self._wlock
        # nats-py's transport methods are untyped.
        write = cast(Callable[[bytes], Any], transport.write)
        writelines = cast(Callable[[list[bytes]], Any], transport.writelines)
        close: Callable[[], object] = transport.close

        def locked_write(payload: bytes) -> Any:
            with lock:
                self._flush_carry_locked()
                return write(payload)

        def locked_writelines(payload: list[bytes]) -> Any:
            with lock:
                self._flush_carry_locked()
                return writelines(payload)

        def locked_close() -> Any:
            with lock:
                self._close_gate_locked()
            return close()

        transport.write = locked_write  # type: ignore[method-assign]
        transport.writelines = locked_writelines  # type: ignore[method-assign]
        transport.close = locked_close  # type: ignore[method-assign]
        setattr(transport, _WRAPPED, True)

    def _close_gate(self) -> None:
        with self._wlock:
            self._close_gate_locked()

    def _close_gate_locked(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.close_locked()

    def _flush_carry_locked(self) -> None:
        if self._gate is not None:
            self._gate.flush_carry_locked()

    def _gate_clear_locked(self, gate: _Gate) -> bool:
        """With the lock held: may a write go to `gate`'s socket right now, ahead of nothing?"""
        nc = self.nc
        return (
            gate is self._gate
            and gate.open
            and nc is not None
            and gate.current(nc)
            and nc.is_connected
            and not nc._pending  # nats-py's own queue of commands to write
            and not gate.carry
            and not gate.stream.is_closing()
            and gate.stream.get_write_buffer_size() == 0
        )

    def _write_now(self, data: bytes) -> bool:
        """Write `data` to the socket from this thread if nothing is queued ahead of it.

        Returns False (nothing written) when it must take the queued path instead.
        """
        gate = self._gate
        if gate is None or len(data) > gate.write_max:
            return False
        ob = self._outbox
        # Never wait for the lock: if another thread (or the loop) is writing, queue instead.
        # So a publish never blocks, not even on the loop thread, and a burst of replies from
        # many actors at once leaves in one write of the loop's.
        if not self._wlock.acquire(blocking=False):
            return False
        try:
            if ob.items or ob.moving or not self._gate_clear_locked(gate):
                return False
            try:
                sent = gate.sock.send(data)
            except BlockingIOError:  # the socket buffer is full: the loop will write it all
                sent = 0
            except OSError:  # the connection broke: nothing was written; queue it instead
                return False
            self.stats["direct"] += 1
            if sent < len(data):
                self.stats["partial"] += 1
                gate.carry.append(data[sent:])
                with contextlib.suppress(RuntimeError):
                    self.loop.call_soon_threadsafe(self._flush_carry)
            return True
        finally:
            self._wlock.release()

    def _flush_carry(self) -> None:
        with self._wlock:
            self._flush_carry_locked()

    # ------------------------------------------------------------------ publish
    def publish(self, subject: str, payload: bytes, reply: str = "") -> None:
        """Publish now if nothing is queued ahead, else queue it; never waits. Any thread."""
        if not (self._write_fast and self._write_now(pub_cmd(subject, reply, payload))):
            self._enqueue(subject, reply, payload, False)

    def tell(self, subject: str, encoded_message: bytes) -> None:
        """Queue one encoded message for a tell subject; adjacent tells share a frame.

        Tells always take the outbox, even when the socket is idle: a burst of tells costs
        one NATS message per burst instead of one per tell.
        """
        self._enqueue(subject, "", encoded_message, True)

    def _enqueue(self, subject: str, reply: str, payload: bytes, is_tell: bool) -> None:
        ob = self._outbox
        self.stats["queued"] += 1  # not exact across threads (no lock); it is a gauge
        ob.items.append((subject, reply, payload, is_tell))
        if not ob.kicked:
            ob.kicked = True
            with contextlib.suppress(RuntimeError):  # loop already closed: nothing to do
                self.loop.call_soon_threadsafe(self._kick)

    def _kick(self) -> None:
        """On the loop, after a publish was queued: write the outbox now when we can."""
        ob = self._outbox
        gate = self._gate
        if gate is not None:
            with self._wlock:
                ob.kicked = False
                if self._loop_may_write_locked(gate):
                    limit = self._max_payload()
                    cmds = [
                        pub_cmd(s, r, p)
                        for s, r, p in self._take_all(limit)
                        if self._fits(s, p, limit)
                    ]
                    gate.flush_carry_locked()
                    if cmds:
                        gate.stream.writelines(cmds)
                    return
        if self._wake is not None:
            self._wake.set()

    def _loop_may_write_locked(self, gate: _Gate) -> bool:
        """Like `_gate_clear_locked`, but the loop may add to a non-empty transport buffer
        (it is the loop's own) up to a limit; beyond it, nats-py's writer applies backpressure.
        """
        nc = self.nc
        return (
            gate is self._gate
            and gate.open
            and nc is not None
            and gate.current(nc)
            and nc.is_connected
            and not nc._pending
            and not self._outbox.moving
            and not gate.stream.is_closing()
            and gate.stream.get_write_buffer_size() < LOOP_WRITE_LIMIT
        )

    def _max_payload(self) -> int:
        return self.nc.max_payload if self.nc is not None else MAX_FRAME_BYTES

    def _fits(self, subject: str, payload: bytes, limit: int) -> bool:
        """The server drops a client that sends more than its max_payload: refuse it here."""
        if len(payload) <= limit:
            return True
        log.warning(
            "publish to %s dropped: %d bytes, more than the server's max_payload %d",
            subject,
            len(payload),
            limit,
        )
        return False

    def _take_all(self, max_payload: int) -> list[tuple[str, str, bytes]]:
        """Everything queued, with runs of tells to one subject framed as one message (each
        frame within `max_payload` unless a single tell is bigger on its own)."""
        frame_limit = min(MAX_FRAME_BYTES, max_payload)
        items = self._outbox.items
        out = []
        while items:
            subject, reply, payload, is_tell = items.popleft()
            if is_tell:
                frame = [payload]
                size = len(payload)
                while (
                    items
                    and items[0][3]
                    and items[0][0] == subject
                    and len(frame) < MAX_FRAME_ITEMS
                    and size + len(items[0][2]) + 5 <= frame_limit  # 5: array header
                ):
                    nxt = items.popleft()[2]
                    frame.append(nxt)
                    size += len(nxt)
                payload = wire.frame_tells(frame)
            out.append((subject, reply, payload))
        return out

    async def _drain_outbox(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush_outbox()

    async def _flush_outbox(self) -> None:
        """The slow path: hand the outbox to nats-py, which buffers while disconnected."""
        nc = self.nc
        if nc is None:
            return
        ob = self._outbox
        # Take under the lock and count the entries as moving until nats-py holds them all,
        # so that no direct write overtakes them. Clear `kicked` first: a publish racing
        # with us kicks again.
        with self._wlock:
            ob.kicked = False
            items = self._take_all(self._max_payload())
            ob.moving += 1
        try:
            for subject, reply, payload in items:
                try:
                    await nc.publish(subject, payload, reply=reply)
                except Exception as e:
                    log.warning("publish to %s failed: %s", subject, e)
        finally:
            ob.moving -= 1
        with contextlib.suppress(Exception):
            if nc.is_connected:
                await nc.flush(timeout=5)

    # ------------------------------------------------------------------ request/reply
    def request(self, subject: str, payload: bytes, timeout: float) -> bytes:
        """Publish with a reply subject and wait (on this thread) for the first reply."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("MeshConnection.request() called on the loop thread")
        token = str(next(self._tokens))
        reply = _Reply()
        self._pending[token] = reply
        self.publish(subject, payload, reply=f"{self._inbox}.{token}")
        if not reply.wait(timeout):
            if self._pending.pop(token, None) is not None:
                raise TimeoutError(f"no reply on {subject} within {timeout:g} s")
            # The loop popped the token first: the reply is being set right now.
            reply.wait(None)
        if reply.error is not None:
            if isinstance(reply.error, NoResponders):
                raise NoResponders(f"no responder on {subject}")
            raise reply.error
        return reply.data

    def _on_reply(self, msg: Msg) -> None:
        token = msg.subject.rsplit(".", 1)[-1]
        collect = self._collectors.get(token)
        if collect is not None:
            if msg.data:
                collect(msg.data)
            return
        reply = self._pending.pop(token, None)
        if reply is None:  # late, after the caller gave up
            return
        if not msg.data and msg.headers and msg.headers.get("Status") == "503":
            reply.set(b"", NoResponders("nobody is subscribed to that subject"))
        else:
            reply.set(msg.data)

    def gather(
        self,
        subject: str,
        payload: bytes,
        timeout: float,
        done: Callable[[list[bytes]], bool] | None = None,
    ) -> list[bytes]:
        """Publish one request and collect every reply until `done(replies)` or `timeout`.

        Replies come in on the connection's one long-lived inbox subscription: a fresh
        subscription per request would race with interest propagation across the cluster's
        routes, and replies from far sites would be dropped.
        """
        replies: list[bytes] = []
        finished = threading.Event()
        token = f"g{next(self._tokens)}"

        def collect(data: bytes) -> None:
            replies.append(data)
            if done is not None and done(list(replies)):
                finished.set()

        self._collectors[token] = collect
        try:
            self.publish(subject, payload, reply=f"{self._inbox}.{token}")
            finished.wait(timeout)
        finally:
            self._collectors.pop(token, None)
        return list(replies)

    # ------------------------------------------------------------------ subscribe
    def subscribe(
        self, subject: str, callback: Callable[[Msg], None], queue: str = ""
    ) -> Subscription:
        """Call `callback(msg)` on the loop thread for every message. It must not block.

        The subscription is made on the loop as soon as there is a connection (and remade
        by nats-py after reconnects); `handle.ready` is set once the server has it.
        """
        handle = Subscription(self, len(self._subs))
        self._subs.append((subject, callback, queue))
        self._handles.append(handle)
        self.loop.call_soon_threadsafe(self._ensure_sub, handle.index)
        return handle

    def _callback(
        self, callback: Callable[[Msg], None], subject: str
    ) -> Callable[[Msg], Awaitable[None]]:
        """nats-py's async callback for `callback`, marked so that `_RawDispatchClient` calls
        `callback` straight from its reader. Either way an exception is logged, not raised:
        it must never reach nats-py's reader (that would drop the connection)."""

        def safe(msg: Msg) -> None:
            try:
                callback(msg)
            except Exception:
                log.exception("subscription callback for %s failed", subject)

        async def cb(msg: Msg) -> None:
            safe(msg)

        setattr(cb, _RAW, safe)
        return cb

    def _ensure_sub(self, index: int) -> None:
        """On the loop: make subscription `index` unless it exists, is underway or was dropped."""
        if self.nc is None or index in self._live_subs or self._subs[index][0] == "":
            return
        self._live_subs[index] = None  # underway
        self._spawn(self._do_subscribe(index))

    async def _do_subscribe(self, index: int) -> None:
        assert self.nc is not None
        subject, callback, queue = self._subs[index]
        sub = await self.nc.subscribe(subject, queue=queue, cb=self._callback(callback, subject))
        if self._subs[index][0] == "":  # dropped while we subscribed
            await sub.unsubscribe()
            return
        self._live_subs[index] = sub
        # A PING round trip: once the server answers it has processed our SUB, so `ready`
        # means what it says (a publish from another connection will reach us).
        try:
            await self.nc.flush(timeout=5)
        except Exception as e:  # disconnected meanwhile: nats-py resubscribes on reconnect
            log.debug("flush after subscribing to %s: %s", subject, e)
        self._handles[index].ready.set()

    def _unsubscribe(self, index: int) -> None:
        def drop() -> None:
            self._subs[index] = ("", self._subs[index][1], "")
            sub = self._live_subs.pop(index, None)
            if sub is not None:
                self._spawn(sub.unsubscribe())

        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(drop)

    # ------------------------------------------------------------------ anything else
    def run(self, coro_fn: Callable[[Client], Awaitable[T]], timeout: float) -> T:
        """Run `coro_fn(nc)` on the loop (JetStream and KV calls) and wait for its result.

        Never call this from the loop thread itself (a subscription callback): it would
        wait on the loop it is blocking.
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("MeshConnection.run() called on the loop thread")
        self.wait_connected(timeout)
        assert self.nc is not None
        nc = self.nc

        async def call() -> T:
            return await coro_fn(nc)

        fut = asyncio.run_coroutine_threadsafe(call(), self.loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise TimeoutError(f"mesh call did not finish within {timeout:g} s") from None


class Subscription:
    """Handle of a subscription made through `MeshConnection.subscribe`."""

    def __init__(self, conn: MeshConnection, index: int) -> None:
        self._conn = conn
        self.index = index
        self.ready = threading.Event()

    def unsubscribe(self) -> None:
        self._conn._unsubscribe(self.index)
