"""The journal: every decision and lifecycle step as a structured event, on disk and on the mesh.

The local JSONL file is the record that survives partitions (a cut-off site cannot publish,
but it can write its own disk); chaos checks merge the journals of all sites. Each line is
written (one O_APPEND write) before `record` returns, so a crashed agent loses no step; the
fsync that makes it survive a crashed machine runs on a syncer thread, so a slow disk never
holds up the actor that records (often one that is fencing).

A journal that cannot be written (disk full, EIO, a closed descriptor) never stops the agent:
`record` does not raise, the event still goes to the mesh, and the failure is reported on
stderr (the first of each kind at once, then a count now and then, then the recovery).
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from harmony.actors.clock import Clock
from harmony.mesh import subjects, wire
from harmony.private_files import open_private_append, private_dir

if TYPE_CHECKING:  # the tether process appends to journals without loading nats-py
    from harmony.mesh.connection import MeshConnection

log = logging.getLogger(__name__)


class JournalEvent(wire.Message):
    """One step: who (site, workload), what (kind), why (reason), with which token, when.

    Reasons often quote what a driver or hook said; they are made `printable` (control
    characters escaped) so a journal line or a terminal showing it never carries one.
    """

    site: str
    workload: str
    kind: str
    reason: str
    mono: float
    wall: float
    token: int | None = None
    incarnation: str = ""
    detail: dict[str, str] = {}

    def __post_init__(self) -> None:
        p = wire.printable
        self.site, self.workload, self.kind = p(self.site), p(self.workload), p(self.kind)
        self.reason, self.incarnation = p(self.reason), p(self.incarnation)
        self.detail = {p(k): p(v) for k, v in self.detail.items()}


class FailureReport:
    """Failed journal writes, told on stderr without flooding it: the first failure of each
    kind (operation + errno) at once, then how many more every `every` seconds while they go
    on, and once when writing works again."""

    def __init__(self, path: Path, every: float = 30.0) -> None:
        self.path = path
        self.every = every
        self.total = 0
        self._kinds: set[str] = set()
        self._unreported: dict[str, int] = {}
        self._next = 0.0
        self._lock = threading.Lock()

    def failed(self, op: str, err: OSError) -> None:
        kind = f"{op} {errno.errorcode.get(err.errno or 0, err.errno)}"
        now = time.monotonic()
        with self._lock:
            self.total += 1
            if kind not in self._kinds:
                self._kinds.add(kind)
                self._next = now + self.every
                text = (
                    f"journal {self.path}: {op} failed: {err.strerror or err} ({kind.split()[1]}); "
                    "events still go to the mesh; further failures are counted"
                )
            else:
                self._unreported[kind] = self._unreported.get(kind, 0) + 1
                if now < self._next:
                    return
                self._next = now + self.every
                text = f"journal {self.path}: {self._counts()} more since the last report"
        _stderr(text)

    def succeeded(self) -> None:
        if not self._kinds:  # the usual case: no lock, nothing to say
            return
        with self._lock:
            if not self._kinds:
                return
            more = f" ({self._counts()} not reported yet)" if self._unreported else ""
            text = f"journal {self.path}: writing works again after {self.total} failures{more}"
            self._kinds.clear()
            self.total = 0
        _stderr(text)

    def _counts(self) -> str:
        said = ", ".join(f"{n} x {k}" for k, n in sorted(self._unreported.items()))
        self._unreported.clear()
        return said


def _stderr(text: str) -> None:
    try:  # stderr may sit on the same full disk
        sys.stderr.write(f"harmony: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


COUNTED_REASONS = frozenset({"start", "promote", "fence"})
"""Kinds whose reason is kept as a metrics label: a copy command's reason starts with the
row of the strategy's goal table that chose it (a bounded set of sentences), then details."""
MAX_REASON = 80
_DETAILS = re.compile(r"[:;(]")


def reason_class(kind: str, reason: str) -> str:
    """The table row of a copy command's reason (the text before its details) for
    `COUNTED_REASONS`, "" otherwise: free text (a token, a deadline, an error) would make one
    series per occurrence."""
    if kind not in COUNTED_REASONS:
        return ""
    return _DETAILS.split(reason, maxsplit=1)[0].strip()[:MAX_REASON]


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
        report_every: float = 30.0,
    ) -> None:
        self.path = path
        self.clock = clock
        self.site = site
        self.incarnation = incarnation
        self.conn = conn
        self.subject = subjects.events(mesh, site)
        self.failures = FailureReport(path, report_every)
        self._lock = threading.Lock()
        self.counts: collections.Counter[tuple[str, str, str]] = collections.Counter()
        """Events recorded since start, by (workload, kind, reason class): the metrics'."""
        self._encoder = msgspec.json.Encoder()
        self._closed = False
        self._torn = False
        self._fd = -1
        self._open()
        self._dirty = threading.Event()
        self._sync_lock = threading.Lock()
        self._syncer = threading.Thread(target=self._sync_loop, name="journal-sync", daemon=True)
        self._syncer.start()

    def _open(self) -> None:
        try:
            private_dir(self.path.parent)
            self._fd = open_private_append(self.path)  # 0600, never through a symlink
        except OSError as e:
            self.failures.failed("open", e)  # tried again at the next event

    def record(
        self,
        workload: str,
        kind: str,
        reason: str,
        token: int | None = None,
        **detail: str,
    ) -> JournalEvent:
        """Write the event, publish it, return it. Never raises, never waits on the disk."""
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
            self.counts[(workload, kind, reason_class(kind, reason))] += 1
            if self._closed:
                return ev
            if self._fd < 0:
                self._open()
            if self._fd >= 0:
                self._write(line)
        if self.conn is not None:
            try:
                self.conn.publish(self.subject, wire.encode(ev))
            except Exception as e:  # the mesh has its own reconnects; the step goes on
                log.debug("journal event not published: %s", e)
        log.info(
            "[%s] %s: %s (token %s)",
            workload or "-",
            kind,
            reason,
            token,
            extra={"workload": workload, "event": kind, "token": token},
        )
        return ev

    def _write(self, line: bytes) -> None:
        """One O_APPEND write. A short write (the disk filled in the middle) leaves a torn
        line: the next line starts on a fresh one, so only the torn one is unreadable."""
        if self._torn:
            line = b"\n" + line
        try:
            n = os.write(self._fd, line)
            if n != len(line):
                self._torn = n > 0 or self._torn
                raise OSError(errno.ENOSPC, f"short write, {n} of {len(line)} bytes")
        except OSError as e:
            self.failures.failed("write", e)
            return
        self._torn = False
        self.failures.succeeded()
        self._dirty.set()

    def _sync_loop(self) -> None:
        while True:
            self._dirty.wait()
            self._dirty.clear()
            with self._sync_lock:
                if self._fd < 0:
                    if self._closed:
                        return
                    continue
                self._fsync()

    def _fsync(self) -> None:
        """Sync the open journal (the caller holds `_sync_lock`); a failure is reported."""
        if self._fd >= 0:
            try:
                os.fsync(self._fd)
            except OSError as e:
                self.failures.failed("fsync", e)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every line written so far is fsynced (False: the disk did not answer)."""
        if not self._sync_lock.acquire(timeout=timeout):
            return False
        try:
            self._fsync()
            return True
        finally:
            self._sync_lock.release()

    def close(self, timeout: float = 5.0) -> None:
        """Sync and close; a disk that hangs in fsync is left behind after `timeout`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if not self._sync_lock.acquire(timeout=timeout):
            log.warning("journal %s: fsync hangs; closing without it", self.path)
            return
        try:
            self._fsync()
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        finally:
            self._sync_lock.release()
        self._dirty.set()  # the syncer sees the closed journal and ends


def append_event(path: Path, event: JournalEvent) -> None:
    """Append one event to a journal from another process (the tether): a single O_APPEND
    write of one line, so it never interleaves with the agent's own lines. Raises OSError
    (the caller has already fenced; it reports the failure its own way)."""
    fd = open_private_append(path)
    try:
        os.write(fd, msgspec.json.encode(event) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def record_tether_fenced(args: Any, reason: str, **detail: str) -> str | None:
    """A watcher outside the agent (keeper or hooks watcher) journals that it fenced a copy:
    `args` carries journal, site, workload, token and incarnation (its command line). Called
    after the fence; returns why it could not be written, or None."""
    if not args.journal:
        return None
    event = JournalEvent(
        site=args.site,
        workload=args.workload,
        kind="tether-fenced",
        reason=reason,
        mono=time.monotonic(),
        wall=time.time(),
        token=args.token,
        incarnation=args.incarnation,
        detail=detail,
    )
    try:
        append_event(Path(args.journal), event)
    except OSError as e:
        return f"cannot append to the journal {args.journal}: {e}"
    return None


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
