"""TLS the write fast path can use: an SSL object we hold, used only under the write lock.

uvloop's (and asyncio's) TLS transport keeps its SSL object to itself: no thread but the
loop's can encrypt a publish, so under nats-py's own TLS the ``write`` fast path is off and
every request and reply costs a wake-up of the loop thread. Here nats-py's
`TcpTransport.connect_tls` is replaced, per transport object, by one that runs TLS over the
same TCP stream with an `ssl.SSLObject` on memory BIOs (as asyncio's own sslproto does).
Every use of that SSL object (handshake, decrypting what arrives, encrypting a write from any
thread, close) holds the connection's write lock. OpenSSL lets one SSL object be used from
several threads one at a time, never at once; the lock is the "one at a time". The same lock
is held until the encrypted bytes are in the socket (or queued for it), so records reach the
server in the order they were sealed, which TLS requires (each record has a sequence number).

Why it is safe: (1) the SSL object and its two BIOs are touched only with the lock held:
`_TlsProtocol.start` and `data_received` (handshake, decrypt), `TlsTransport.write` and
`close`, and the gate's direct write (`WriteGate.write`, which calls `encrypt_locked`
inside its own critical section). (2) Sealed records leave in one critical section with their
sealing: into the socket, into the loop transport's buffer, or into the gate's carry, which
`before_raw_write` flushes ahead of anything sealed later. (3) Records sealed but not sent
(the socket failed) poison the session: the connection is dropped and nats-py reconnects with
a new one. tests/mesh/test_fast_tls.py hammers one session from many threads while it
decrypts a flood the other way.

Used only with the ``write`` fast path, and only when nats-py's internals are what we expect
(`harmony.mesh.tls_hooks.install_tls`); otherwise nats-py's own TLS runs (direct writes are
off under TLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import ParseResult

from nats.aio.transport import TcpTransport

log = logging.getLogger("harmony.mesh.connection")

# One TLS record holds at most 16 KiB of plaintext and `SSLObject.read` returns at most one
# record, but allocates its whole buffer on every call: 256 KiB reads cost ~10x more per
# small message (measured 26 vs 2.5 us) than reads the size of a record.
READ_CHUNK = 17 * 1024


class TlsTransport(asyncio.Transport):
    """The plaintext side of a TLS session over `raw` (the loop's TCP transport).

    `write` may be called from any thread that holds `lock` or can take it. What a direct
    writer needs is `encrypt_locked` (seal bytes, with the lock held) and then to put the
    result into the socket before releasing the lock.
    """

    def __init__(
        self,
        raw: asyncio.Transport,
        sslobj: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        lock: Any,
        context: ssl.SSLContext,
        app: asyncio.Protocol,
    ) -> None:
        super().__init__()
        self.raw = raw
        self.sslobj = sslobj
        self.incoming = incoming
        self.outgoing = outgoing
        self.lock = lock
        self.context = context
        self.app = app
        self.broken: Exception | None = None
        self._closing = False
        # Called (lock held) before any encrypted bytes go to `raw`: the write gate sets it to
        # flush the rest of a partial direct write first.
        self.before_raw_write: Callable[[], None] | None = None

    # ---------------------------------------------------------------- with the lock held
    def encrypt_locked(self, data: bytes | bytearray | memoryview) -> bytes:
        """Seal `data` into TLS records; the caller must send them before releasing the lock.

        Raises ConnectionError if the session cannot encrypt (broken, closed).
        """
        if self.broken is not None or self._closing:
            raise ConnectionError("TLS session is closed")
        view = memoryview(data)
        try:
            while view:
                view = view[self.sslobj.write(view) :]
        except (ssl.SSLError, ValueError) as e:
            # A WantRead here would mean renegotiation, which nats-server never asks for.
            self.broken = e
            raise ConnectionError(f"TLS write failed: {e}") from e
        return self.outgoing.read()

    def send_raw_locked(self, cipher: bytes) -> None:
        if not cipher:
            return
        if self.before_raw_write is not None:
            self.before_raw_write()
        self.raw.write(cipher)

    # ---------------------------------------------------------------- asyncio.Transport
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        with self.lock:
            if self._closing or self.raw.is_closing():
                return  # like asyncio's transports: writes after close are dropped
            try:
                cipher = self.encrypt_locked(data)
            except ConnectionError as e:
                self.fail(e)
                return
            self.send_raw_locked(cipher)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def fail(self, exc: BaseException) -> None:
        """On the loop: the session is unusable; drop the connection (nats-py reconnects)."""
        log.warning("TLS connection dropped: %s", exc)
        self.raw.abort()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        with self.lock:
            # Queues close_notify; the peer's answer is not awaited.
            with contextlib.suppress(ssl.SSLError, ValueError):
                self.sslobj.unwrap()
            cipher = self.outgoing.read()
            if cipher and not self.raw.is_closing():
                self.send_raw_locked(cipher)
        self.raw.close()

    def abort(self) -> None:
        self._closing = True
        self.raw.abort()

    def is_closing(self) -> bool:
        return self._closing or self.raw.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sslcontext":
            return self.context
        if name == "ssl_object":
            return self.sslobj
        if name in ("peercert", "cipher"):
            with self.lock:
                return self.sslobj.getpeercert() if name == "peercert" else self.sslobj.cipher()
        return self.raw.get_extra_info(name, default)

    def get_write_buffer_size(self) -> int:
        return self.raw.get_write_buffer_size()  # the TLS layer itself never buffers

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.raw.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.raw.set_write_buffer_limits(high, low)

    def is_reading(self) -> bool:
        return self.raw.is_reading()

    def pause_reading(self) -> None:
        self.raw.pause_reading()

    def resume_reading(self) -> None:
        self.raw.resume_reading()

    def can_write_eof(self) -> bool:
        return False

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.app

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self.app = protocol


class _TlsProtocol(asyncio.Protocol):
    """The raw TCP transport's protocol: handshake, then decrypt and hand over to `app`."""

    def __init__(
        self, tls: TlsTransport, handshake: asyncio.Future[None], bare: asyncio.BaseProtocol
    ) -> None:
        self.tls = tls
        self.handshake = handshake
        self.established = False
        # The protocol of the plain stream before TLS: until the handshake is done, nats-py
        # still holds that stream's writer, and waits on it (`wait_closed`) after a failure.
        self.bare = bare

    def start(self) -> None:
        with self.tls.lock:
            self._handshake_locked()
            self.tls.send_raw_locked(self.tls.outgoing.read())

    def _handshake_locked(self) -> None:
        try:
            self.tls.sslobj.do_handshake()
        except ssl.SSLWantReadError:
            return
        self.established = True

    def _read_locked(self) -> tuple[bytes, bool]:
        """Everything decryptable now, and whether the peer closed the session."""
        sslobj, incoming = self.tls.sslobj, self.tls.incoming
        chunks: list[bytes] = []
        while True:
            try:
                chunk = sslobj.read(READ_CHUNK)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # close_notify
                return b"".join(chunks), True
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)
            # Nothing left to decrypt without more bytes: skip the WantRead exception.
            if not incoming.pending and not sslobj.pending():
                break
        return b"".join(chunks), False

    def data_received(self, data: bytes) -> None:
        tls = self.tls
        plain, eof, error = b"", False, None
        just_established = False
        with tls.lock:
            tls.incoming.write(data)
            try:
                if not self.established:
                    self._handshake_locked()
                    just_established = self.established
                if self.established:
                    plain, eof = self._read_locked()
            except (ssl.SSLError, ValueError) as e:
                error = e
                tls.broken = e
            # Handshake messages, or a post-handshake answer (a TLS 1.3 key update).
            if tls.outgoing.pending and not tls.raw.is_closing():
                tls.send_raw_locked(tls.outgoing.read())
        if error is not None:
            if not self.handshake.done():
                self.handshake.set_exception(error)
            tls.raw.abort()
            return
        if just_established:
            tls.app.connection_made(tls)
            if not self.handshake.done():
                self.handshake.set_result(None)
        if plain:
            tls.app.data_received(plain)
        if eof:
            self.eof_received()
            tls.raw.close()

    def eof_received(self) -> bool | None:
        if not self.established:
            return None
        return self.tls.app.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        # We abort the TCP stream on a TLS error (a bad record, an alert such as "certificate
        # required"): the reader must see that error, not a clean EOF, or nats-py would take
        # a refused handshake for a connection.
        exc = exc or self.tls.broken
        if not self.handshake.done():
            self.handshake.set_exception(exc or ConnectionResetError("closed during TLS handshake"))
        if self.established:
            self.tls.app.connection_lost(exc)
        else:
            self.bare.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.established:
            self.tls.app.pause_writing()

    def resume_writing(self) -> None:
        if self.established:
            self.tls.app.resume_writing()


async def connect_tls_layer(
    transport: TcpTransport,
    lock: Any,
    uri: str | ParseResult,
    ssl_context: ssl.SSLContext,
    buffer_size: int,
    connect_timeout: int,
) -> None:
    """`TcpTransport.connect_tls` with our TLS layer; nats-py's own if the stream is unusual."""
    writer = transport._io_writer
    # uvloop's transports are not `asyncio.Transport` subclasses: check what we use.
    stream = writer.transport if writer is not None else None
    needs = ("set_protocol", "get_protocol", "write", "abort", "is_closing")
    if stream is None or not all(hasattr(stream, a) for a in needs) or stream.is_closing():
        await TcpTransport.connect_tls(transport, uri, ssl_context, buffer_size, connect_timeout)
        return
    raw = cast(asyncio.Transport, stream)
    loop = asyncio.get_running_loop()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    hostname = uri if isinstance(uri, str) else uri.hostname
    sslobj = ssl_context.wrap_bio(incoming, outgoing, server_side=False, server_hostname=hostname)
    reader = asyncio.StreamReader()  # as nats-py's connect_tls does
    app = asyncio.StreamReaderProtocol(reader)
    tls = TlsTransport(raw, sslobj, incoming, outgoing, lock, ssl_context, app)
    proto = _TlsProtocol(tls, loop.create_future(), raw.get_protocol())
    raw.set_protocol(proto)
    try:
        proto.start()
        await asyncio.wait_for(proto.handshake, connect_timeout)
    except BaseException:
        raw.abort()
        raise
    transport._io_reader = reader
    transport._io_writer = asyncio.StreamWriter(tls, app, reader, loop)
