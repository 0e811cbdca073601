"""Publishing from any thread: `publish`, `tell`, and the outbox the loop drains.

It lives apart from the connection's lifecycle and request/reply code because it is the
part that decides how bytes leave: direct, framed, or through nats-py. `MeshConnection`
gets it as a mixin (`Publishing`), so a publish calls these methods directly.

Publishes from any thread go to one outbox that the loop drains in order. A burst of tells
to one subject leaves as one NATS message (see `wire.frame_tells`), which is what lets remote
tells keep up with local Pykka tells. A publish that finds nothing queued ahead of it may be
written by the calling thread itself (the ``write`` fast path, see `harmony.mesh.fastpaths`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging

from nats.protocol.command import pub_cmd

from harmony.mesh import wire
from harmony.mesh.fastpaths import FastWrites

# The connection's logger: these are the connection's messages.
log = logging.getLogger("harmony.mesh.connection")

MAX_FRAME_ITEMS = 2048
MAX_FRAME_BYTES = 512 * 1024


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


class Publishing(FastWrites):
    """`MeshConnection`'s publishing: the outbox and the loop's draining of it.

    A mixin: `MeshConnection.__init__` sets the attributes declared here and in `FastWrites`.
    """

    _wake: asyncio.Event | None

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
