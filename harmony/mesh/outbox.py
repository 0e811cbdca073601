"""The outbox: publishes queued by any thread, drained in order by the connection's loop.

It is its own object because it decides how queued bytes leave: a burst of tells to one
subject leaves as one NATS message (see `wire.frame_tells`), which is what lets remote tells
keep up with local Pykka tells. `MeshConnection` holds one and puts every publish in it that
was not written directly (the ``write`` fast path, `harmony.mesh.fastpaths`); the loop takes
everything out, either to write it itself (`WriteGate.write_outbox`) or to hand it to nats-py
(`hand_to`), which buffers while disconnected. Nothing here knows about sockets.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading

from nats.aio.client import Client
from nats.protocol.command import pub_cmd

from harmony.mesh import wire

# The connection's logger: these are the connection's messages.
log = logging.getLogger("harmony.mesh.connection")

MAX_FRAME_ITEMS = 2048
MAX_FRAME_BYTES = 512 * 1024


def fits(subject: str, payload: bytes, limit: int) -> bool:
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


class Outbox:
    """Publishes queued by any thread, drained in order by the loop.

    Entries are (subject, reply, payload, is_tell). Consecutive tells to the same subject are
    framed together; everything else is sent as it came. `kicked` says the loop was already
    woken for what is queued. `moving` counts drains that have taken entries out but not yet
    handed them all to nats-py: direct writes wait for those (`busy`).
    """

    def __init__(self) -> None:
        self.items: collections.deque[tuple[str, str, bytes, bool]] = collections.deque()
        self.kicked = False
        self.moving = 0

    def put(self, subject: str, reply: str, payload: bytes, is_tell: bool) -> bool:
        """Queue one publish (any thread); True when the caller must wake the loop for it."""
        self.items.append((subject, reply, payload, is_tell))
        if self.kicked:
            return False
        self.kicked = True
        return True

    @property
    def busy(self) -> bool:
        """Something is queued or on its way to nats-py: a direct write would overtake it."""
        return bool(self.items) or self.moving > 0

    def take_all(self, max_payload: int) -> list[tuple[str, str, bytes]]:
        """Everything queued, with runs of tells to one subject framed as one message (each
        frame within `max_payload` unless a single tell is bigger on its own)."""
        frame_limit = min(MAX_FRAME_BYTES, max_payload)
        items = self.items
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

    def take_commands(self, max_payload: int) -> list[bytes]:
        """`take_all` as NATS PUB commands, for the loop to write itself; too big: dropped."""
        return [
            pub_cmd(s, r, p) for s, r, p in self.take_all(max_payload) if fits(s, p, max_payload)
        ]

    async def hand_to(self, nc: Client, lock: threading.RLock, max_payload: int) -> None:
        """The slow path: hand everything queued to nats-py, which buffers while disconnected.

        Takes under the write `lock` and counts the entries as moving until nats-py holds
        them all, so that no direct write overtakes them. Clears `kicked` first: a publish
        racing with us kicks again.
        """
        with lock:
            self.kicked = False
            items = self.take_all(max_payload)
            self.moving += 1
        try:
            for subject, reply, payload in items:
                try:
                    await nc.publish(subject, payload, reply=reply)
                except Exception as e:
                    log.warning("publish to %s failed: %s", subject, e)
        finally:
            self.moving -= 1
        with contextlib.suppress(Exception):
            if nc.is_connected:
                await nc.flush(timeout=5)
