"""The TUI's data layer: where snapshots, events and connection news come from.

A feed pushes `FeedUpdate`s to one sink. The sink is called from other threads (the poll
thread, the NATS loop thread) and must not block: the app's sink only posts a Textual
message. Widgets never talk to NATS, so the same app runs on a live mesh (`MeshFeed`) and on
recorded data (`RecordedFeed`, for the snapshot tests and the screenshots).

Above `SMALL_MESH` sites (the summaries bucket holds more), a live feed stops asking every
site: it reads the summaries (one stream read) and asks only the sites the user expanded
(`watch`), each by its own subject.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from nats.aio.msg import Msg

from harmony.actors.journal import JournalEvent
from harmony.actors.messages import Snapshot
from harmony.client import collect_snapshot, collect_snapshots, collect_summaries, decode_event
from harmony.mesh import subjects, wire
from harmony.mesh.connection import MeshConnection, MeshUnavailable
from harmony.mesh.remote import RemoteRef
from harmony.mesh.summaries import SUMMARY_INTERVAL, Summary
from harmony.security.identity import Identity
from harmony.status import SMALL_MESH
from harmony.textsafe import redact_url

log = logging.getLogger(__name__)

RETRY_READS = 3
"""Summary reads that fail in a row and are retried at the next poll (then: on schedule)."""


@dataclass(frozen=True)
class SnapshotsUpdate:
    """One poll: every site that answered, and the local monotonic time of the answers."""

    snaps: dict[str, Snapshot]
    at: float


@dataclass(frozen=True)
class SummariesUpdate:
    """A large mesh: every site's summary (the sites bucket), read at local time `at`."""

    found: dict[str, Summary]
    at: float


@dataclass(frozen=True)
class SiteSnapshotsUpdate:
    """A large mesh: the watched (expanded) sites, each asked alone; None: no answer."""

    snaps: dict[str, Snapshot | None]
    at: float


@dataclass(frozen=True)
class EventUpdate:
    event: JournalEvent


@dataclass(frozen=True)
class ConnectionUpdate:
    """The NATS connection's state: connecting, connected, disconnected, unreachable."""

    state: str
    detail: str = ""


FeedUpdate = (
    SnapshotsUpdate | SummariesUpdate | SiteSnapshotsUpdate | EventUpdate | ConnectionUpdate
)
Sink = Callable[[FeedUpdate], None]


class Feed(Protocol):
    mesh: str

    def start(self, sink: Sink) -> None: ...

    def stop(self) -> None: ...

    def watch(self, sites: frozenset[str]) -> None:
        """The sites whose actor trees to poll on a large mesh (the expanded ones)."""
        ...

    def ask(self, site: str, path: str, message: wire.Message, timeout: float) -> Any:
        """Ask an actor of a site; blocks, so call it from a worker thread. Raises
        `RemoteError`, `TimeoutError` or `MeshUnavailable` on failure."""
        ...


class MeshFeed:
    """A live mesh: polls every site's snapshot on its own thread (one poll per
    `interval`), forwards every site's journal events, and reports connection changes.

    Polling (rather than watching heartbeats) reads the same board `harmony status` reads,
    so the TUI shows exactly what the agents report, stuck actors included.

    A mesh whose summaries bucket names more than `SMALL_MESH` sites is large (for the rest
    of the run): then each poll reads the summaries (at most every `summary_every` s) and
    asks only the `watch`ed sites for their snapshots. The bucket is checked at start and
    every `SUMMARY_INTERVAL` s while the mesh is small.
    """

    def __init__(
        self,
        servers: list[str],
        mesh: str,
        *,
        interval: float = 1.0,
        snapshot_timeout: float = 1.0,
        name: str = "harmony-tui",
        identity: Identity | None = None,
        summary_every: float = 2.0,
        summary_timeout: float = 3.0,
    ) -> None:
        self.mesh = mesh
        self.identity = identity
        self.servers = list(servers)
        self.interval = interval
        self.snapshot_timeout = snapshot_timeout
        self._name = name
        self.summary_every = summary_every
        self.summary_timeout = summary_timeout
        self.large = False
        self._summaries_read: float | None = None
        self._failed_reads = 0
        self.watched: frozenset[str] = frozenset()
        self._wake = threading.Event()
        self._askers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="tui-site")
        self._sink: Sink | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.conn: MeshConnection | None = None

    def start(self, sink: Sink) -> None:
        self._sink = sink
        sink(ConnectionUpdate("connecting", redact_url(self.servers)))
        self.conn = MeshConnection(
            self.servers, self._name, on_state=self._on_state, identity=self.identity
        ).start()
        self.conn.subscribe(subjects.all_events(self.mesh), self._on_event)
        self._thread = threading.Thread(target=self._poll_forever, name="tui-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.snapshot_timeout + self.summary_timeout + 5)
        self._askers.shutdown(wait=False, cancel_futures=True)
        if self.conn is not None:
            self.conn.close()

    def watch(self, sites: frozenset[str]) -> None:
        """Poll these sites' snapshots (a large mesh); a newly watched one at once."""
        new = sites - self.watched
        self.watched = frozenset(sites)  # one assignment: the poll thread reads it whole
        if new:
            self._wake.set()

    def ask(self, site: str, path: str, message: wire.Message, timeout: float) -> Any:
        if self.conn is None or not self.conn.connected:
            raise MeshUnavailable("not connected to NATS")
        ref = RemoteRef(self.conn, self.mesh, site, path, timeout, sender=subjects.OPERATOR)
        return ref.ask(message, timeout)

    # -- threads that are not the app's: hand over, never block --------------------------
    def _emit(self, update: FeedUpdate) -> None:
        if self._sink is not None and not self._stop.is_set():
            self._sink(update)

    def _on_state(self, kind: str, detail: str) -> None:
        state = {"reconnected": "connected"}.get(kind, kind)
        self._emit(ConnectionUpdate(state, redact_url(detail)))

    def _on_event(self, msg: Msg) -> None:
        event = decode_event(msg.data)  # cleaned there, like the snapshots
        if event is not None:
            self._emit(EventUpdate(event))

    def _poll_forever(self) -> None:
        assert self.conn is not None
        while not self._stop.is_set():
            started = time.monotonic()
            if self.conn.connected:
                try:
                    self._poll(self.conn)
                except Exception:  # a poll that fails is retried at the next interval
                    log.exception("snapshot poll failed")
            self._wake.wait(max(0.05, self.interval - (time.monotonic() - started)))
            self._wake.clear()

    def _poll(self, conn: MeshConnection) -> None:
        now = time.monotonic()
        last = self._summaries_read
        every = self.summary_every if self.large else SUMMARY_INTERVAL
        if last is None or now - last >= every:
            self._summaries_read = now
            found = self._read_summaries(conn)
            if found is None and self._failed_reads < RETRY_READS:
                self._failed_reads += 1  # a read that timed out is retried at the next poll
                self._summaries_read = None if last is None else now - every
                if last is None:
                    return  # small or large is not known yet: do not ask every site
            elif found is not None:
                self._failed_reads = 0
                self.large = self.large or len(found) > SMALL_MESH
                if self.large and found:
                    self._emit(SummariesUpdate(found, time.monotonic()))
        if not self.large:
            snaps = collect_snapshots(conn, self.mesh, self.snapshot_timeout)
            self._emit(SnapshotsUpdate(snaps, time.monotonic()))
            return
        sites = sorted(self.watched)
        if sites:
            answers = self._askers.map(
                lambda site: collect_snapshot(conn, self.mesh, site, self.snapshot_timeout),
                sites,
            )
            self._emit(
                SiteSnapshotsUpdate(dict(zip(sites, answers, strict=True)), time.monotonic())
            )

    def _read_summaries(self, conn: MeshConnection) -> dict[str, Summary] | None:
        """The summaries bucket ({} when there is none: an older mesh stays small); None
        when the read failed (a loaded server: tried again)."""
        try:
            return collect_summaries(conn, self.mesh, self.summary_timeout)
        except Exception as e:
            log.debug("no site summaries: %s", e)
            return None


class RecordedFeed:
    """Replays recorded updates at once (snapshot tests, screenshots, offline demos).

    Asks get the canned `answers` by (site, path), or fail like an agent that does not
    handle the message."""

    def __init__(
        self,
        mesh: str,
        updates: list[FeedUpdate],
        answers: dict[tuple[str, str], wire.Message | None] | None = None,
    ) -> None:
        self.mesh = mesh
        self.updates = list(updates)
        self.answers = dict(answers or {})
        self.asked: list[tuple[str, str, wire.Message]] = []
        self.watched: frozenset[str] = frozenset()

    def start(self, sink: Sink) -> None:
        sink(ConnectionUpdate("connected", "recording"))
        for update in self.updates:
            sink(update)

    def stop(self) -> None:
        pass

    def watch(self, sites: frozenset[str]) -> None:
        self.watched = sites

    def ask(self, site: str, path: str, message: wire.Message, timeout: float) -> Any:
        from harmony.mesh.remote import RemoteError

        self.asked.append((site, path, message))
        if (site, path) in self.answers:
            return self.answers[(site, path)]
        raise RemoteError(wire.ERR_UNHANDLED, f"recorded feed: no answer for {path} on {site}")
