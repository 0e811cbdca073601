"""The journal: every decision and lifecycle step as a structured event, on disk and on the mesh.

The local JSONL file is the record that survives partitions (a cut-off site cannot publish,
but it can write its own disk); chaos checks merge the journals of all sites. Each line is
flushed and fsynced before `record` returns, so a crash loses no acknowledged step.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from harmony.actors.clock import Clock
from harmony.mesh import subjects, wire

if TYPE_CHECKING:  # the tether process appends to journals without loading nats-py
    from harmony.mesh.connection import MeshConnection

log = logging.getLogger(__name__)


class JournalEvent(wire.Message):
    """One step: who (site, workload), what (kind), why (reason), with which token, when."""

    site: str
    workload: str
    kind: str
    reason: str
    mono: float
    wall: float
    token: int | None = None
    incarnation: str = ""
    detail: dict[str, str] = {}


class Journal:
    """Appends events to ``<data_dir>/journal.jsonl`` and publishes them on the mesh."""

    def __init__(
        self,
        path: Path,
        clock: Clock,
        site: str,
        mesh: str,
        incarnation: str,
        conn: MeshConnection | None = None,
    ) -> None:
        self.path = path
        self.clock = clock
        self.site = site
        self.incarnation = incarnation
        self.conn = conn
        self.subject = subjects.events(mesh, site)
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._encoder = msgspec.json.Encoder()

    def record(
        self,
        workload: str,
        kind: str,
        reason: str,
        token: int | None = None,
        **detail: str,
    ) -> JournalEvent:
        ev = JournalEvent(
            site=self.site,
            workload=workload,
            kind=kind,
            reason=reason,
            mono=self.clock.monotonic(),
            wall=self.clock.wall(),
            token=token,
            incarnation=self.incarnation,
            detail=detail,
        )
        line = self._encoder.encode(ev) + b"\n"
        with self._lock:
            if self._fd < 0:
                return ev
            os.write(self._fd, line)
            os.fsync(self._fd)
        if self.conn is not None:
            self.conn.publish(self.subject, wire.encode(ev))
        log.info("[%s] %s: %s (token %s)", workload or "-", kind, reason, token)
        return ev

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def append_event(path: Path, event: JournalEvent) -> None:
    """Append one event to a journal from another process (the tether): a single O_APPEND
    write of one line, so it never interleaves with the agent's own lines."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, msgspec.json.encode(event) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def read_journal(path: Path) -> list[JournalEvent]:
    """Every complete line of a journal (a torn last line after a crash is skipped)."""
    decoder = msgspec.json.Decoder(JournalEvent)
    out = []
    with open(path, "rb") as f:
        for line in f:
            try:
                out.append(decoder.decode(line))
            except msgspec.DecodeError:
                continue
    return out
