"""A fault proxy for the links between sites: cut, heal, delay — no root, no Docker.

Every NATS route of a simulated mesh goes through one listening port of this proxy per
ordered pair of sites (server *a* dials b's cluster port through the ``a->b`` link). A link
can be cut (open connections are closed, new ones refused), healed, slowed (every chunk
is held back for a delay, in order) or made lossy (each chunk read from the socket is
discarded with a probability). A dropped chunk is a hole in a TCP byte stream, not a lost
packet: NATS sees a corrupt protocol stream and closes and re-dials the route, so "drop"
behaves like a link that keeps resetting, which is what a lossy WAN does to a route.
Cutting both directions of every link between two groups is a partition; cutting one
direction only stalls that direction's bytes, which TCP turns into a one-way partition of
the route.

It runs its own asyncio loop on a thread, so a simulation or a test drives it with plain
method calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Link:
    """One direction of connectivity: bytes from `src`'s side towards `dst`'s listener."""

    src: str
    dst: str
    listen_port: int
    target_port: int
    cut: bool = False
    delay: float = 0.0
    drop: float = 0.0
    dropped: int = 0
    writers: set[asyncio.StreamWriter] = field(default_factory=set)
    server: asyncio.AbstractServer | None = None
    accepted: int = 0


class FaultProxy:
    """All links of one mesh. `add(src, dst, listen_port, target_port)` then `start()`."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.links: dict[tuple[str, str], Link] = {}
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="fault-proxy", daemon=True
        )
        self._started = False

    def add(self, src: str, dst: str, listen_port: int, target_port: int) -> Link:
        link = Link(src, dst, listen_port, target_port)
        self.links[(src, dst)] = link
        return link

    # ------------------------------------------------------------------ lifecycle
    @property
    def running(self) -> bool:
        return self._started

    def start(self) -> None:
        self._thread.start()
        self._started = True
        self._call(self._listen_all())

    def stop(self) -> None:
        if not self._started:
            return
        with contextlib.suppress(Exception):
            self._call(self._close_all(), timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self._started = False

    def _call(self, coro: object, timeout: float = 10) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    async def _listen_all(self) -> None:
        for link in self.links.values():
            link.server = await asyncio.start_server(
                functools.partial(self._accept, link), self.host, link.listen_port
            )

    async def _close_all(self) -> None:
        for link in self.links.values():
            if link.server is not None:
                link.server.close()
            for w in list(link.writers):
                w.close()

    # ------------------------------------------------------------------ faults
    def cut(self, src: str, dst: str, both: bool = True) -> None:
        """Cut src->dst (and dst->src unless `both` is False)."""
        pairs = [(src, dst), (dst, src)] if both else [(src, dst)]
        self._call(self._set(pairs, cut=True, close=both))

    def heal(self, src: str, dst: str, both: bool = True) -> None:
        pairs = [(src, dst), (dst, src)] if both else [(src, dst)]
        self._call(self._set(pairs, cut=False, delay=0.0))

    def delay(self, src: str, dst: str, seconds: float, both: bool = True) -> None:
        pairs = [(src, dst), (dst, src)] if both else [(src, dst)]
        self._call(self._set(pairs, delay=seconds))

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every link between different groups; links inside a group are healed."""
        sets = [set(g) for g in groups]
        where = {s: i for i, g in enumerate(sets) for s in g}
        cut, keep = [], []
        for src, dst in self.links:
            if src in where and dst in where and where[src] != where[dst]:
                cut.append((src, dst))
            else:
                keep.append((src, dst))
        self._call(self._set(cut, cut=True, close=True))
        self._call(self._set(keep, cut=False, delay=0.0))

    def heal_all(self) -> None:
        self._call(self._set(list(self.links), cut=False, delay=0.0, drop=0.0))

    def set_cuts(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Cut exactly these ordered pairs (src -> dst) and heal every other link's cut.

        A pair cut in both directions closes its open connections; a pair cut one way only
        holds its bytes (see `cut`). Delays and drops are left as they are.
        """
        wanted = set(pairs)
        both = {p for p in wanted if (p[1], p[0]) in wanted}
        self._call(self._set(sorted(both), cut=True, close=True))
        self._call(self._set(sorted(wanted - both), cut=True))
        self._call(self._set([p for p in self.links if p not in wanted], cut=False))

    def set_drop(self, pairs: Iterable[tuple[str, str]], probability: float) -> None:
        """Discard each chunk on these links with `probability` (0 turns it off)."""
        self._call(self._set(list(pairs), drop=probability))

    def set_delay(self, pairs: Iterable[tuple[str, str]], seconds: float) -> None:
        self._call(self._set(list(pairs), delay=seconds))

    async def _set(
        self,
        pairs: list[tuple[str, str]],
        cut: bool | None = None,
        delay: float | None = None,
        close: bool = False,
        drop: float | None = None,
    ) -> None:
        for pair in pairs:
            link = self.links.get(pair)
            if link is None:
                continue
            if delay is not None:
                link.delay = delay
            if drop is not None:
                link.drop = drop
            if cut is not None:
                link.cut = cut
                if cut and close:
                    for w in list(link.writers):
                        w.close()
                    link.writers.clear()

    # ------------------------------------------------------------------ the pump
    async def _accept(
        self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if link.cut:
            writer.close()
            return
        try:
            up_r, up_w = await asyncio.open_connection(self.host, link.target_port)
        except OSError:
            writer.close()
            return
        link.accepted += 1
        link.writers.update((writer, up_w))
        reverse = self.links.get((link.dst, link.src))
        await asyncio.gather(
            self._pump(link, reader, up_w, writer),
            # Replies travel dst->src: they obey the reverse link's cut and delay.
            self._pump(reverse or link, up_r, writer, up_w),
            return_exceptions=True,
        )
        link.writers.discard(writer)
        link.writers.discard(up_w)

    async def _pump(
        self,
        link: Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        other: asyncio.StreamWriter,
    ) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                while link.cut:  # one-way cut: hold the bytes (the connection stays open)
                    if writer.is_closing():
                        return
                    await asyncio.sleep(0.05)
                if link.drop and random.random() < link.drop:
                    link.dropped += 1
                    continue
                if link.delay:
                    await asyncio.sleep(link.delay)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            other.close()
