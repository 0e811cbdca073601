"""The fast paths of `MeshConnection`: the parts that rely on nats-py's internals.

They live apart from the connection so that everything which would break on a nats-py
upgrade is in one place, next to the checks that switch it off. `MeshConnection` holds a
`WriteGate` (the write lock, and the socket any thread may write to) and makes its nats-py
client with `new_client` and its subscription callbacks with `nats_callback`.

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
themselves off where they do not apply (WebSocket, TLS by nats-py's own transport, an
unexpected nats-py). Under TLS two fixes of nats-py's own behaviour apply in every mode
(`harmony.mesh.tls_hooks`): TLS is required whatever the server's INFO says, and a failed
first handshake is retried; they check nats-py's internals the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.transport import TcpTransport

from harmony.mesh.outbox import Outbox
from harmony.mesh.tls import TlsTransport

# The connection's logger: these are the connection's messages.
log = logging.getLogger("harmony.mesh.connection")

# The loop writes the outbox itself while the transport buffers less than this; above it,
# publishes go through nats-py (which waits for the socket to drain: backpressure).
LOOP_WRITE_LIMIT = 1 << 20
# Larger publishes are never written by the calling thread: a big write is more likely to be
# partial, and it holds the write lock longer. They go through the loop.
THREAD_WRITE_MAX = 64 * 1024

FAST_PATHS_ENV = "HARMONY_MESH_FAST_PATHS"
FAST_PATHS = frozenset({"write", "dispatch"})


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


def can_dispatch() -> bool:
    """Whether this nats-py has the internals `new_client(dispatch=True)` relies on (2.x has)."""
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


def new_client(dispatch: bool) -> Client:
    """A nats-py client; with `dispatch`, one whose reader calls `nats_callback`s itself."""
    return _RawDispatchClient() if dispatch else Client()


def nats_callback(
    callback: Callable[[Msg], None], subject: str
) -> Callable[[Msg], Awaitable[None]]:
    """nats-py's async callback for `callback`, marked so that the `dispatch` client calls
    `callback` straight from its reader. Either way an exception is logged, not raised: it
    must never reach nats-py's reader (that would drop the connection)."""

    def safe(msg: Msg) -> None:
        try:
            callback(msg)
        except Exception:
            log.exception("subscription callback for %s failed", subject)

    async def cb(msg: Msg) -> None:
        safe(msg)

    setattr(cb, _RAW, safe)
    return cb


# ---------------------------------------------------------------------- writes from any thread
class StreamGate:
    """The socket of one stream of the connection, writable from any thread under the lock.

    Every write to this socket holds the `WriteGate`'s lock: ours (`WriteGate.write`, the
    loop's `write_outbox`) and nats-py's, whose transport methods we wrap. Our own writes use
    a duplicate of the socket's file descriptor, so a descriptor closed by the loop meanwhile
    can never be reused under us. If the kernel takes only part of a direct write, the rest
    waits in `carry` and goes out first, before any other write.

    nats-py keeps one `TcpTransport` object across reconnects and gives it a new stream
    each time, so a gate stands for one stream (`writer`), not for the transport object.

    Under TLS, `stream` (what takes plaintext) is our `TlsTransport` and `raw` the TCP
    transport under it; the carry then holds sealed records, which go to `raw` as they are.
    """

    def __init__(self, nc: Client, transport: TcpTransport) -> None:
        writer = transport._io_writer
        assert writer is not None
        self.nc = nc
        self.transport = transport
        self.writer = writer
        self.stream = writer.transport  # the uvloop/asyncio transport under nats-py's
        self.tls = self.stream if isinstance(self.stream, TlsTransport) else None
        self.raw = self.tls.raw if self.tls is not None else self.stream
        fd = self.raw.get_extra_info("socket").fileno()
        self.sock = socket.socket(fileno=os.dup(fd))
        self.sock.setblocking(False)
        self.carry: list[bytes] = []
        self.open = True
        # Bigger publishes go through the loop, which checks the server's payload limit.
        self.write_max = min(THREAD_WRITE_MAX, nc.max_payload)

    def usable_locked(self) -> bool:
        """With the lock held: still the client's live stream, and nothing of nats-py's own
        (its queue of commands to write) waits to go out first."""
        nc = self.nc
        return (
            self.open
            and nc._transport is self.transport
            and self.transport._io_writer is self.writer
            and nc.is_connected
            and not nc._pending
            and not self.stream.is_closing()
        )

    def flush_carry_locked(self) -> None:
        """On the loop, with the lock held: hand the rest of a partial direct write to the
        stream, which buffers it until the socket drains."""
        if self.carry:
            if self.open and not self.raw.is_closing():
                self.raw.writelines(self.carry)
            self.carry.clear()

    def close_locked(self) -> None:
        if self.open:
            self.open = False
            self.carry.clear()
            self.sock.close()
            if self.tls is not None and self.tls.before_raw_write == self.flush_carry_locked:
                self.tls.before_raw_write = None


class WriteGate:
    """The connection's write lock and, while it is connected over plain TCP or our own TLS,
    the socket any thread may write to directly (`current`, None when closed).

    It looks at the outbox only to keep order: a direct write never overtakes what is queued.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        outbox: Outbox,
        stats: dict[str, int],
        enabled: bool,
    ) -> None:
        self.enabled = enabled
        # Reentrant: under TLS a write through nats-py takes it in the transport wrapper and
        # again in the TLS layer (`harmony.mesh.tls`).
        self.lock = threading.RLock()
        self.current: StreamGate | None = None
        self._loop = loop
        self._outbox = outbox
        self._stats = stats

    def open(self, nc: Client) -> None:
        """On the loop, once (re)connected: let every thread write to the new socket."""
        self.close()
        if not self.enabled:
            return
        transport = nc._transport
        # TCP, plain or under our own TLS layer: nats-py's TLS and WebSocket transports frame
        # the bytes themselves, out of our reach.
        if type(transport) is not TcpTransport or transport._io_writer is None:
            return
        stream = transport._io_writer.transport
        if not isinstance(stream, TlsTransport) and (
            stream.get_extra_info("sslcontext") is not None
            or stream.get_extra_info("ssl_object") is not None
        ):
            return
        if stream.is_closing():
            return
        try:
            self._wrap_transport(transport)
            gate = StreamGate(nc, transport)
        except (OSError, AttributeError) as e:
            log.warning("direct socket writes unavailable (%s); using nats-py's writer", e)
            return
        with self.lock:
            self.current = gate
            if gate.tls is not None:
                gate.tls.before_raw_write = gate.flush_carry_locked

    def close(self) -> None:
        with self.lock:
            self._close_locked()

    def _close_locked(self) -> None:
        gate, self.current = self.current, None
        if gate is not None:
            gate.close_locked()

    def _wrap_transport(self, transport: TcpTransport) -> None:
        """Make nats-py's writes to `transport` take the write lock (once per object).

        Instance attributes shadow the class's methods; nats-py calls them as before. A write
        first flushes the carry of a partial direct write, so bytes never interleave.
        """
        if getattr(transport, _WRAPPED, False):
            return
        lock = self.lock
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
                self._close_locked()
            return close()

        transport.write = locked_write  # type: ignore[method-assign]
        transport.writelines = locked_writelines  # type: ignore[method-assign]
        transport.close = locked_close  # type: ignore[method-assign]
        setattr(transport, _WRAPPED, True)

    def _flush_carry_locked(self) -> None:
        if self.current is not None:
            self.current.flush_carry_locked()

    def _flush_carry(self) -> None:
        with self.lock:
            self._flush_carry_locked()

    def write_outbox(self, max_payload: int) -> bool:
        """On the loop, after a publish was queued: write the whole outbox to the socket now.

        The loop may add to a non-empty transport buffer (it is the loop's own) up to a
        limit; beyond it, or while a drain is handing entries to nats-py, it returns False:
        then nats-py's writer takes them (and applies backpressure).
        """
        gate = self.current
        if gate is None:
            return False
        ob = self._outbox
        with self.lock:
            ob.kicked = False
            if not (
                gate is self.current
                and gate.usable_locked()
                and not ob.moving
                and gate.stream.get_write_buffer_size() < LOOP_WRITE_LIMIT
            ):
                return False
            cmds = ob.take_commands(max_payload)
            gate.flush_carry_locked()
            if cmds:
                gate.stream.writelines(cmds)
            return True

    def write(self, data: bytes) -> bool:
        """Write `data` to the socket from this thread if nothing is queued ahead of it.

        Returns False (nothing written) when it must take the queued path instead.
        """
        gate = self.current
        if gate is None or len(data) > gate.write_max:
            return False
        # Never wait for the lock: if another thread (or the loop) is writing, queue instead.
        # So a publish never blocks, not even on the loop thread, and a burst of replies from
        # many actors at once leaves in one write of the loop's.
        if not self.lock.acquire(blocking=False):
            return False
        try:
            if (
                self._outbox.busy
                or gate is not self.current
                or not gate.usable_locked()
                or gate.carry
                or gate.stream.get_write_buffer_size() != 0
            ):
                return False
            return self._send_locked(gate, data)
        finally:
            self.lock.release()

    def _send_locked(self, gate: StreamGate, data: bytes) -> bool:
        if gate.tls is not None:
            try:
                data = gate.tls.encrypt_locked(data)
            except ConnectionError:
                return False
        try:
            sent = gate.sock.send(data)
        except BlockingIOError:  # the socket buffer is full: the loop will write it all
            sent = 0
        except OSError as e:  # the connection broke: nothing was written; queue it instead
            if gate.tls is not None:
                # Sealed but not sent: the session's record numbers are ahead of the
                # stream now, so it must not be used again; drop it (nats-py reconnects).
                gate.tls.broken = e
                gate.close_locked()
                self.current = None
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(gate.tls.fail, e)
            return False
        self._stats["direct"] += 1
        if sent < len(data):
            self._stats["partial"] += 1
            gate.carry.append(data[sent:])
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._flush_carry)
        return True
