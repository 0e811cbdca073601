"""The fast paths of `MeshConnection`: the parts that rely on nats-py's internals.

They live apart from the connection so that everything which would break on a nats-py
upgrade is in one place, next to the checks that switch it off. `MeshConnection` gets the
write gate as a mixin (`FastWrites`), so the hot path calls these methods directly, with no
layer in between.

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
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from nats.aio.client import Client
from nats.aio.transport import TcpTransport

from harmony.mesh.tls import TlsTransport

if TYPE_CHECKING:
    from harmony.mesh.outbox import _Outbox

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

    Under TLS, `stream` (what takes plaintext) is our `TlsTransport` and `raw` the TCP
    transport under it; the carry then holds sealed records, which go to `raw` as they are.
    """

    def __init__(self, transport: TcpTransport, max_payload: int) -> None:
        writer = transport._io_writer
        assert writer is not None
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
        self.write_max = min(THREAD_WRITE_MAX, max_payload)

    def current(self, nc: Client) -> bool:
        return nc._transport is self.transport and self.transport._io_writer is self.writer

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


class FastWrites:
    """`MeshConnection`'s write gate: direct writes to the socket from any thread.

    A mixin: `MeshConnection.__init__` sets the attributes declared here.
    """

    loop: asyncio.AbstractEventLoop
    nc: Client | None
    _write_fast: bool
    _wlock: threading.RLock
    _gate: _Gate | None
    _outbox: _Outbox
    stats: dict[str, int]

    def _open_gate(self) -> None:
        """On the loop, once (re)connected: let every thread write to the new socket."""
        self._close_gate()
        nc = self.nc
        if not self._write_fast or nc is None:
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
            gate = _Gate(transport, nc.max_payload)
        except (OSError, AttributeError) as e:
            log.warning("direct socket writes unavailable (%s); using nats-py's writer", e)
            return
        with self._wlock:
            self._gate = gate
            if gate.tls is not None:
                gate.tls.before_raw_write = gate.flush_carry_locked

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
                    self._gate = None
                    with contextlib.suppress(RuntimeError):
                        self.loop.call_soon_threadsafe(gate.tls.fail, e)
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
