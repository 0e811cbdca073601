"""The connection thread: one asyncio loop per process owns the nats-py connection.

Actors are threads; nats-py is asyncio. Everything an actor asks of NATS goes through the
thread-safe methods here. Nothing here ever blocks the loop, and subscription callbacks run
on the loop, so they must not block either: they decode and `tell`.

This module holds `MeshConnection` itself: its lifecycle (connect, reconnect, close) and
its public methods. The rest is in objects it holds and calls, one idea per module:

- `harmony.mesh.outbox` (`Outbox`): publishes queued by any thread, drained in order by
  the loop, with bursts of tells framed as one NATS message;
- `harmony.mesh.fastpaths` (`WriteGate`, `new_client`): what relies on nats-py's internals,
  switched by ``HARMONY_MESH_FAST_PATHS``: direct writes to the socket from any thread, and
  subscription callbacks called from nats-py's reader;
- `harmony.mesh.replies` (`ReplyTable`): `request` and `gather` over the one inbox;
- `harmony.mesh.subscriptions` (`Subscriptions`): subscriptions, made once connected;
- `harmony.mesh.tls`: with ``tls=`` and the ``write`` fast path, TLS run by an SSL object
  used only under the write lock, so that direct writes work under TLS too; hooked into
  nats-py by `harmony.mesh.tls_hooks`, which also makes TLS required when configured.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import re
import secrets
import ssl
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.protocol.command import pub_cmd

from harmony.mesh.fastpaths import (
    FAST_PATHS,
    FAST_PATHS_ENV,
    WriteGate,
    can_dispatch,
    fast_paths_from,
    nats_callback,
    new_client,
)
from harmony.mesh.outbox import MAX_FRAME_BYTES, Outbox
from harmony.mesh.replies import Done, NoResponders, ReplyTable
from harmony.mesh.subscriptions import Subscription, Subscriptions
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
        self._dispatch_fast = "dispatch" in fast and can_dispatch()
        self.loop = _new_loop()
        self._thread = threading.Thread(target=self._run_loop, name=f"nats-{name}", daemon=True)
        self.nc: Client | None = None
        self._connected = threading.Event()
        self._closed = False
        self._wake: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # How publishes left: written by the calling thread (`direct`), of which the kernel
        # took only part at first (`partial`), or through the loop (`queued`).
        self.stats = {"direct": 0, "partial": 0, "queued": 0}
        self._outbox = Outbox()
        self._gate = WriteGate(self.loop, self._outbox, self.stats, self._write_fast)
        prefix = identity.inbox_prefix if identity else "_INBOX"
        self._replies = ReplyTable(f"{prefix}.{secrets.token_hex(8)}", self.publish)
        self._subscriptions = Subscriptions(self.loop, self._spawn)

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
        used = {"write": self._write_fast, "dispatch": self._dispatch_fast}
        return frozenset(name for name, on in used.items() if on)

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

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
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
            nc = new_client(self._dispatch_fast)
            if self._tls is not None:
                # Our TLS layer with the write fast path, else nats-py's (fixed to retry after
                # a failed handshake); False: nats-py's TLS as it is, without direct writes.
                install_tls(nc, self._gate.lock if self._write_fast else None)
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
            await nc.subscribe(
                self._replies.subject, cb=nats_callback(self._replies.deliver, "inbox")
            )
            self._subscriptions.attach(nc)
            self._up("connected")
            return

    def _up(self, kind: str) -> None:
        """On the loop, (re)connected: open the write gate, say so, and send what was queued
        while there was no connection."""
        nc = self.nc
        if nc is not None:
            self._gate.open(nc)
        self._connected.set()
        url = nc.connected_url.netloc if nc and nc.connected_url else ""
        self._state(kind, redact_url(url))
        if self._outbox.items:
            self._kick()

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
        self._gate.close()
        self._state("disconnected")

    async def _on_reconnected(self) -> None:
        self._up("reconnected")

    async def _on_closed(self) -> None:
        self._connected.clear()
        self._gate.close()

    async def _close(self) -> None:
        await self._flush_outbox()
        self._gate.close()
        for t in list(self._tasks):
            t.cancel()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.drain(), 2)
            with contextlib.suppress(Exception):
                await self.nc.close()
        self._replies.fail_all(MeshUnavailable("the mesh connection was closed"))

    # ------------------------------------------------------------------ publish, request
    def publish(self, subject: str, payload: bytes, reply: str = "") -> None:
        """Publish now if nothing is queued ahead, else queue it; never waits. Any thread."""
        if not (self._write_fast and self._gate.write(pub_cmd(subject, reply, payload))):
            self.stats["queued"] += 1  # not exact across threads (no lock); it is a gauge
            if self._outbox.put(subject, reply, payload, False):
                self._wake_loop()

    def tell(self, subject: str, encoded_message: bytes) -> None:
        """Queue one encoded message for a tell subject; adjacent tells share a frame.

        Tells always take the outbox, even when the socket is idle: a burst of tells costs
        one NATS message per burst instead of one per tell.
        """
        self.stats["queued"] += 1
        if self._outbox.put(subject, "", encoded_message, True):
            self._wake_loop()

    def _wake_loop(self) -> None:
        with contextlib.suppress(RuntimeError):  # loop already closed: nothing to do
            self.loop.call_soon_threadsafe(self._kick)

    def _kick(self) -> None:
        """On the loop, after a publish was queued: write the outbox now when we can, else
        wake the drain that hands it to nats-py."""
        if not self._gate.write_outbox(self._max_payload()) and self._wake is not None:
            self._wake.set()

    def _max_payload(self) -> int:
        return self.nc.max_payload if self.nc is not None else MAX_FRAME_BYTES

    async def _drain_outbox(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush_outbox()

    async def _flush_outbox(self) -> None:
        if self.nc is not None:
            await self._outbox.hand_to(self.nc, self._gate.lock, self._max_payload())

    def request(self, subject: str, payload: bytes, timeout: float) -> bytes:
        """Publish with a reply subject and wait (on this thread) for the first reply."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("MeshConnection.request() called on the loop thread")
        return self._replies.request(subject, payload, timeout)

    def gather(
        self, subject: str, payload: bytes, timeout: float, done: Done | None = None
    ) -> list[bytes]:
        """Publish one request and collect every reply until `done(replies)` or `timeout`
        (see `ReplyTable.gather`)."""
        return self._replies.gather(subject, payload, timeout, done)

    # ------------------------------------------------------------------ subscribe
    def subscribe(
        self, subject: str, callback: Callable[[Msg], None], queue: str = ""
    ) -> Subscription:
        """Call `callback(msg)` on the loop thread for every message. It must not block.

        The subscription is made on the loop as soon as there is a connection (and remade
        by nats-py after reconnects); `handle.ready` is set once the server has it.
        """
        return self._subscriptions.add(subject, callback, queue)

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
