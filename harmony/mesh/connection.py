"""The connection thread: one asyncio loop per process owns the nats-py connection.

Actors are threads; nats-py is asyncio. Everything an actor asks of NATS goes through the
thread-safe methods here, which hand work to the loop without waiting on it (publish) or
wait on a `concurrent.futures.Future` on the *caller's* thread (request, run). Nothing here
ever blocks the loop, and subscription callbacks run on the loop, so they must not block
either: they decode and `tell`.

Publishes from any thread go to one outbox that a single loop task drains. A burst of tells
to one subject leaves as one NATS message (see `wire.frame_tells`), which is what lets remote
tells keep up with local Pykka tells.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import itertools
import logging
import secrets
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.protocol.command import pub_cmd

from harmony.mesh import wire

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_FRAME_ITEMS = 2048
MAX_FRAME_BYTES = 512 * 1024
DIRECT_WRITE_LIMIT = 1 << 20


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


class _Outbox:
    """Publishes queued by any thread, drained in order by one loop task.

    Entries are (subject, reply, payload, is_tell). Consecutive tells to the same subject are
    framed together; everything else is sent as it came.
    """

    def __init__(self) -> None:
        self.items: collections.deque[tuple[str, str, bytes, bool]] = collections.deque()
        self.kicked = False


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
    ) -> None:
        self.servers = list(servers)
        self.name = name
        self._on_state = on_state
        self._reconnect_wait = reconnect_wait
        self.loop = _new_loop()
        self._thread = threading.Thread(target=self._run_loop, name=f"nats-{name}", daemon=True)
        self.nc: Client | None = None
        self._connected = threading.Event()
        self._closed = False
        self._outbox = _Outbox()
        self._wake: asyncio.Event | None = None
        self._subs: list[tuple[str, Callable[[Msg], None], str]] = []
        self._live_subs: dict[int, Any] = {}
        self._handles: list[Subscription] = []
        self._inbox = f"_INBOX.{secrets.token_hex(8)}"
        self._pending: dict[str, concurrent.futures.Future[bytes]] = {}
        self._collectors: dict[str, Callable[[bytes], None]] = {}
        self._tokens = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()

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
            try:
                nc = await nats.connect(
                    servers=self.servers,
                    name=self.name,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,  # an agent never gives up
                    reconnect_time_wait=self._reconnect_wait,
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
            await nc.subscribe(f"{self._inbox}.*", cb=self._on_reply)
            for i in range(len(self._subs)):
                self._ensure_sub(i)
            self._spawn(self._drain_outbox())
            self._connected.set()
            self._state("connected", nc.connected_url.netloc if nc.connected_url else "")
            return

    async def _on_error(self, e: Exception) -> None:
        log.debug("nats error: %s", e)

    async def _on_disconnected(self) -> None:
        self._connected.clear()
        self._state("disconnected")

    async def _on_reconnected(self) -> None:
        self._connected.set()
        url = self.nc.connected_url.netloc if self.nc and self.nc.connected_url else ""
        self._state("reconnected", url)

    async def _on_closed(self) -> None:
        self._connected.clear()

    async def _close(self) -> None:
        await self._flush_outbox()
        for t in list(self._tasks):
            t.cancel()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.drain(), 2)
            with contextlib.suppress(Exception):
                await self.nc.close()
        for fut in self._pending.values():
            fut.cancel()

    # ------------------------------------------------------------------ publish
    def publish(self, subject: str, payload: bytes, reply: str = "") -> None:
        """Queue a publish; returns at once. Safe from any thread."""
        self._enqueue(subject, reply, payload, False)

    def tell(self, subject: str, encoded_message: bytes) -> None:
        """Queue one encoded message for a tell subject; adjacent tells share a frame."""
        self._enqueue(subject, "", encoded_message, True)

    def _enqueue(self, subject: str, reply: str, payload: bytes, is_tell: bool) -> None:
        ob = self._outbox
        ob.items.append((subject, reply, payload, is_tell))
        if not ob.kicked:
            ob.kicked = True
            with contextlib.suppress(RuntimeError):  # loop already closed: nothing to do
                self.loop.call_soon_threadsafe(self._kick)

    def _kick(self) -> None:
        """On the loop, right after a publish was queued: write it now when we can."""
        nc = self.nc
        if nc is not None and self._direct_ok(nc):
            self._outbox.kicked = False
            cmds = [pub_cmd(s, r, p) for s, r, p in self._take_all()]
            if cmds and nc._transport is not None:
                nc._transport.writelines(cmds)
            return
        if self._wake is not None:
            self._wake.set()

    @staticmethod
    def _direct_ok(nc: Client) -> bool:
        """Whether we may write to the socket ourselves instead of via nats-py's flusher.

        The flusher costs two task switches per publish, which is most of a remote ask's
        latency. We only bypass it while connected, with nothing queued inside nats-py
        (ordering) and with a small socket buffer (backpressure goes the slow way).
        """
        t = nc._transport
        if not nc.is_connected or nc._pending or t is None:
            return False
        writer = getattr(t, "_io_writer", None)
        if writer is None:
            return False
        return bool(writer.transport.get_write_buffer_size() < DIRECT_WRITE_LIMIT)

    def _take_all(self) -> list[tuple[str, str, bytes]]:
        """Everything queued, with runs of tells to one subject framed as one message."""
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
                    and size < MAX_FRAME_BYTES
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
        nc = self.nc
        if nc is None:
            return
        # Clear the flag before draining: a publish racing with us kicks again.
        self._outbox.kicked = False
        for subject, reply, payload in self._take_all():
            try:
                await nc.publish(subject, payload, reply=reply)
            except Exception as e:
                log.warning("publish to %s failed: %s", subject, e)
        with contextlib.suppress(Exception):
            if nc.is_connected:
                await nc.flush(timeout=5)

    # ------------------------------------------------------------------ request/reply
    def request_future(self, subject: str, payload: bytes) -> concurrent.futures.Future[bytes]:
        """Publish with a reply subject; the future gets the first reply's payload."""
        token = str(next(self._tokens))
        fut: concurrent.futures.Future[bytes] = concurrent.futures.Future()
        self._pending[token] = fut
        self.publish(subject, payload, reply=f"{self._inbox}.{token}")
        fut.add_done_callback(lambda _f: self._pending.pop(token, None))
        return fut

    def request(self, subject: str, payload: bytes, timeout: float) -> bytes:
        fut = self.request_future(subject, payload)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise TimeoutError(f"no reply on {subject} within {timeout:g} s") from None
        except NoResponders:
            raise NoResponders(f"no responder on {subject}") from None

    async def _on_reply(self, msg: Msg) -> None:
        token = msg.subject.rsplit(".", 1)[-1]
        collect = self._collectors.get(token)
        if collect is not None:
            if msg.data:
                collect(msg.data)
            return
        fut = self._pending.pop(token, None)
        if fut is None or fut.done():
            return
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            if not msg.data and msg.headers and msg.headers.get("Status") == "503":
                fut.set_exception(NoResponders("nobody is subscribed to that subject"))
            else:
                fut.set_result(msg.data)

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

    def _ensure_sub(self, index: int) -> None:
        """On the loop: make subscription `index` unless it exists, is underway or was dropped."""
        if self.nc is None or index in self._live_subs or self._subs[index][0] == "":
            return
        self._live_subs[index] = None  # underway
        self._spawn(self._do_subscribe(index))

    async def _do_subscribe(self, index: int) -> None:
        assert self.nc is not None
        subject, callback, queue = self._subs[index]

        async def cb(msg: Msg) -> None:
            try:
                callback(msg)
            except Exception:
                log.exception("subscription callback for %s failed", subject)

        sub = await self.nc.subscribe(subject, queue=queue, cb=cb)
        if self._subs[index][0] == "":  # dropped while we subscribed
            await sub.unsubscribe()
            return
        self._live_subs[index] = sub
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
