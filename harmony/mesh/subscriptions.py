"""The subscriptions made through a `MeshConnection`, and the handle each caller gets.

They live apart from the connection's lifecycle because they outlive its first connect: a
subscription asked for before there is a client is made once there is one (`attach`), and
nats-py remakes it after every reconnect. Everything here runs on the loop except `add` and
`drop`, which any thread may call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from harmony.mesh.fastpaths import nats_callback

# The connection's logger: these are the connection's messages.
log = logging.getLogger("harmony.mesh.connection")

Spawn = Callable[[Coroutine[Any, Any, Any]], None]


class Subscription:
    """Handle of a subscription made through `MeshConnection.subscribe`."""

    def __init__(self, table: Subscriptions, index: int) -> None:
        self._table = table
        self.index = index
        self.ready = threading.Event()

    def unsubscribe(self) -> None:
        self._table.drop(self.index)


class Subscriptions:
    """Every subscription of one connection, by index; `spawn` runs a coroutine on the loop
    as a task the connection cancels when it closes."""

    def __init__(self, loop: asyncio.AbstractEventLoop, spawn: Spawn) -> None:
        self._loop = loop
        self._spawn = spawn
        self._nc: Client | None = None
        self._subs: list[tuple[str, Callable[[Msg], None], str]] = []
        self._live: dict[int, Any] = {}
        self._handles: list[Subscription] = []

    def add(self, subject: str, callback: Callable[[Msg], None], queue: str) -> Subscription:
        """Any thread: ask for a subscription; it is made on the loop once there is a client."""
        handle = Subscription(self, len(self._subs))
        self._subs.append((subject, callback, queue))
        self._handles.append(handle)
        self._loop.call_soon_threadsafe(self._ensure, handle.index)
        return handle

    def attach(self, nc: Client) -> None:
        """On the loop, once connected for the first time: make every subscription asked for."""
        self._nc = nc
        for i in range(len(self._subs)):
            self._ensure(i)

    def live(self, index: int) -> bool:
        """Whether subscription `index` is made on the server (not underway, not dropped)."""
        return bool(self._live.get(index))

    def drop(self, index: int) -> None:
        """Any thread: end subscription `index` (also if it is still underway)."""

        def drop() -> None:
            self._subs[index] = ("", self._subs[index][1], "")
            sub = self._live.pop(index, None)
            if sub is not None:
                self._spawn(sub.unsubscribe())

        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(drop)

    def _ensure(self, index: int) -> None:
        """On the loop: make subscription `index` unless it exists, is underway or was dropped."""
        if self._nc is None or index in self._live or self._subs[index][0] == "":
            return
        self._live[index] = None  # underway
        self._spawn(self._make(self._nc, index))

    async def _make(self, nc: Client, index: int) -> None:
        subject, callback, queue = self._subs[index]
        sub = await nc.subscribe(subject, queue=queue, cb=nats_callback(callback, subject))
        if self._subs[index][0] == "":  # dropped while we subscribed
            await sub.unsubscribe()
            return
        self._live[index] = sub
        # A PING round trip: once the server answers it has processed our SUB, so `ready`
        # means what it says (a publish from another connection will reach us). Twice:
        # nats-py writes its PING straight to the transport while the SUB may still wait in
        # its pending queue (seen once in 40 runs); by the first PONG the flusher has
        # written the SUB, and the second PING goes out behind it.
        try:
            await nc.flush(timeout=5)
            await nc.flush(timeout=5)
        except Exception as e:  # disconnected meanwhile: nats-py resubscribes on reconnect
            log.debug("flush after subscribing to %s: %s", subject, e)
        self._handles[index].ready.set()
