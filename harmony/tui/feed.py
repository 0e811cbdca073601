"""The TUI's data layer: where snapshots, events and connection news come from.

A feed pushes `FeedUpdate`s to one sink. The sink is called from other threads (the poll
thread, the NATS loop thread) and must not block: the app's sink only posts a Textual
message. Widgets never talk to NATS, so the same app runs on a live mesh (`MeshFeed`) and on
recorded data (`RecordedFeed`, for the snapshot tests and the screenshots).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from nats.aio.msg import Msg

from harmony.actors.journal import JournalEvent
from harmony.actors.messages import Snapshot
from harmony.client import collect_snapshots, decode_event
from harmony.mesh import subjects, wire
from harmony.mesh.connection import MeshConnection, MeshUnavailable
from harmony.mesh.remote import RemoteRef
from harmony.security.identity import Identity
from harmony.textsafe import redact_url

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SnapshotsUpdate:
    """One poll: every site that answered, and the local monotonic time of the answers."""

    snaps: dict[str, Snapshot]
    at: float


@dataclass(frozen=True)
class EventUpdate:
    event: JournalEvent


@dataclass(frozen=True)
class ConnectionUpdate:
    """The NATS connection's state: connecting, connected, disconnected, unreachable."""

    state: str
    detail: str = ""


FeedUpdate = SnapshotsUpdate | EventUpdate | ConnectionUpdate
Sink = Callable[[FeedUpdate], None]


class Feed(Protocol):
    mesh: str

    def start(self, sink: Sink) -> None: ...

    def stop(self) -> None: ...

    def ask(self, site: str, path: str, message: wire.Message, timeout: float) -> Any:
        """Ask an actor of a site; blocks, so call it from a worker thread. Raises
        `RemoteError`, `TimeoutError` or `MeshUnavailable` on failure."""
        ...


class MeshFeed:
    """A live mesh: polls every site's snapshot on its own thread (one poll per
    `interval`), forwards every site's journal events, and reports connection changes.

    Polling (rather than watching heartbeats) reads the same board `harmony status` reads,
    so the TUI shows exactly what the agents report, stuck actors included.
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
    ) -> None:
        self.mesh = mesh
        self.identity = identity
        self.servers = list(servers)
        self.interval = interval
        self.snapshot_timeout = snapshot_timeout
        self._name = name
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
        if self._thread is not None:
            self._thread.join(self.snapshot_timeout + 5)
        if self.conn is not None:
            self.conn.close()

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
                    snaps = collect_snapshots(self.conn, self.mesh, self.snapshot_timeout)
                except Exception:  # a poll that fails is retried at the next interval
                    log.exception("snapshot poll failed")
                else:
                    self._emit(SnapshotsUpdate(snaps, time.monotonic()))
            self._stop.wait(max(0.05, self.interval - (time.monotonic() - started)))


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

    def start(self, sink: Sink) -> None:
        sink(ConnectionUpdate("connected", "recording"))
        for update in self.updates:
            sink(update)

    def stop(self) -> None:
        pass

    def ask(self, site: str, path: str, message: wire.Message, timeout: float) -> Any:
        from harmony.mesh.remote import RemoteError

        self.asked.append((site, path, message))
        if (site, path) in self.answers:
            return self.answers[(site, path)]
        raise RemoteError(wire.ERR_UNHANDLED, f"recorded feed: no answer for {path} on {site}")
