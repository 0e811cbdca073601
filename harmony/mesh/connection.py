"""The connection thread: one asyncio loop per process owns the nats-py connection.

Actors are threads; nats-py is asyncio. Everything an actor asks of NATS goes through the
thread-safe methods here. Nothing here ever blocks the loop, and subscription callbacks run
on the loop, so they must not block either: they decode and `tell`.

This module holds `MeshConnection` itself: its lifecycle (connect, reconnect, close), its
subscriptions and `run`. The rest of its methods come from mixins, one idea per module, each
building on the one below (plain method calls, no layer in between on the hot path):

- `harmony.mesh.replies` (`Replies`): `request` and `gather` over the one inbox;
- `harmony.mesh.outbox` (`Publishing`): `publish`, `tell`, and the outbox the loop drains,
  with bursts of tells framed as one NATS message;
- `harmony.mesh.fastpaths` (`FastWrites`): what relies on nats-py's internals, switched by
  ``HARMONY_MESH_FAST_PATHS``: direct writes to the socket from any thread, and
  subscription callbacks called from nats-py's reader (`_RawDispatchClient`);
- `harmony.mesh.tls`: with ``tls=`` and the ``write`` fast path, TLS run by an SSL object
  used only under the write lock, so that direct writes work under TLS too; hooked into
  nats-py by `harmony.mesh.tls_hooks`, which also makes TLS required when configured.

The public names of all of them are importable from here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import re
import secrets
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg

from harmony.mesh.fastpaths import (
    _RAW,
    FAST_PATHS,
    FAST_PATHS_ENV,
    _can_dispatch_raw,
    _Gate,
    _RawDispatchClient,
    fast_paths_from,
)
from harmony.mesh.outbox import _Outbox
from harmony.mesh.replies import NoResponders, Replies, _Reply
from harmony.mesh.tls_hooks import install_tls, require_tls
from harmony.security.identity import Identity, public_key_of
from harmony.textsafe import redact_url

__all__ = [
    "FAST_PATHS",
    "FAST_PATHS_ENV",
    "MeshConnection",
    "MeshUnavailable",
    "NoResponders",
    "Subscription",
    "fast_paths_from",
]

log = logging.getLogger(__name__)
_REFUSAL = re.compile(r"(?i)authori[sz]ation|permission|certificate|handshake|tls")
T = TypeVar("T")


class MeshUnavailable(Exception):
    """NATS could not be reached (yet); the connection keeps trying in the background."""


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()


class MeshConnection(Replies):
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
        identity: Identity | None = None,
        tls: ssl.SSLContext | None = None,
        tls_hostname: str | None = None,
    ) -> None:
        if tls is not None and not isinstance(tls, ssl.SSLContext):
            raise TypeError(f"MeshConnection tls must be an ssl.SSLContext, not {type(tls)!r}")
        self.servers = list(servers)
        self.name = name
        # Who we are to a secure mesh: TLS context, nkey seed, and the inbox prefix our
        # permissions allow us to subscribe to (None: plaintext and anonymous).
        self.identity = identity
        self._auth: dict[str, Any] = identity.connect_kwargs() if identity else {}
        # TLS for every server (mutual when it holds a client certificate): `tls` if given,
        # else the identity's; `tls_hostname` is the name to verify when not the URL's host.
        own_tls = self._auth.pop("tls", None)
        self._tls = tls if tls is not None else own_tls
        self._tls_hostname = tls_hostname
        self._last_error = ""
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
        # Reentrant: under TLS a write through nats-py takes it in the transport wrapper and
        # again in the TLS layer (`harmony.mesh.tls`).
        self._wlock = threading.RLock()
        self._gate: _Gate | None = None
        self._subs: list[tuple[str, Callable[[Msg], None], str]] = []
        self._live_subs: dict[int, Any] = {}
        self._handles: list[Subscription] = []
        prefix = identity.inbox_prefix if identity else "_INBOX"
        self._inbox = f"{prefix}.{secrets.token_hex(8)}"
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
            # A refused credential or certificate is not an unreachable server: say which.
            why = f"; last error: {self._last_error}" if self._last_error else ""
            raise MeshUnavailable(
                f"no NATS server answered within {timeout:g} s "
                f"(tried {redact_url(self.servers)}){why}"
            )

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def fast_paths(self) -> frozenset[str]:
        """The fast paths in use (see `harmony.mesh.fastpaths`)."""
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
            if self._tls is not None:
                # Our TLS layer with the write fast path, else nats-py's (fixed to retry after
                # a failed handshake); False: nats-py's TLS as it is, without direct writes.
                install_tls(nc, self._wlock if self._write_fast else None)
            try:
                # Not a fast path: with TLS configured, a server offering none is refused
                # in every mode (nats-py alone would follow it into plaintext).
                if self._tls is not None and not require_tls(nc):
                    raise MeshUnavailable(
                        "this nats-py cannot be made to refuse a server without TLS"
                    )
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
                    tls=self._tls,
                    tls_hostname=self._tls_hostname,
                    **self._auth,
                )
            except Exception as e:
                self._note_error(e)
                if attempt == 1 or attempt % 20 == 0:
                    log.warning(
                        "cannot reach NATS at %s: %s (retrying)",
                        redact_url(self.servers),
                        redact_url(str(e)),
                    )
                self._state("unreachable", redact_url(str(e)))
                await asyncio.sleep(self._reconnect_wait)
                continue
            self.nc = nc
            await nc.subscribe(f"{self._inbox}.*", cb=self._callback(self._on_reply, "inbox"))
            for i in range(len(self._subs)):
                self._ensure_sub(i)
            self._open_gate()
            self._connected.set()
            url = nc.connected_url.netloc if nc.connected_url else ""
            self._state("connected", redact_url(url))
            if self._outbox.items:  # queued before we were connected
                self._kick()
            return

    async def _on_error(self, e: Exception) -> None:
        log.debug("nats error: %s", redact_url(str(e)))
        if not self._connected.is_set():
            self._note_error(e)
        self._reread_nkey()

    def _note_error(self, e: Exception) -> None:
        """Keep the error that says most: a refusal (the server named the reason) is not
        replaced by the connection reset that often follows it in the next attempt."""
        text = f"{type(e).__name__}: {redact_url(str(e))}"
        if not _REFUSAL.search(self._last_error) or _REFUSAL.search(text):
            self._last_error = text

    def _reread_nkey(self) -> None:
        """nats-py rereads the seed file to sign but keeps the public key it read at connect;
        after a rotation it would present the old key with the new signature forever. Take
        the key from the file again before each reconnect attempt."""
        if self.identity is None or self.nc is None:
            return
        try:
            key = public_key_of(self.identity.seed_file)
        except Exception as e:  # mid-rotation or unreadable: keep what we have, say so
            log.warning("cannot read nkey seed %s: %s", self.identity.seed_file, e)
            return
        self.nc._public_nkey = key

    async def _on_disconnected(self) -> None:
        self._reread_nkey()
        self._connected.clear()
        self._close_gate()
        self._state("disconnected")

    async def _on_reconnected(self) -> None:
        self._open_gate()
        self._connected.set()
        url = self.nc.connected_url.netloc if self.nc and self.nc.connected_url else ""
        self._state("reconnected", redact_url(url))
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
        # means what it says (a publish from another connection will reach us). Twice:
        # nats-py writes its PING straight to the transport while the SUB may still wait in
        # its pending queue (seen once in 40 runs); by the first PONG the flusher has
        # written the SUB, and the second PING goes out behind it.
        try:
            await self.nc.flush(timeout=5)
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
