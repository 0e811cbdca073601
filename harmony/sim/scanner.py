"""The process-table scanner: which processes of each workload's containment live, and when.

Half of the simulator's ground truth (the other half is the workloads' own records, see
`truth`). The journal says what an agent *believed*; the process table says what runs. Every
process of a copy carries ``HARMONY_CONTAINMENT=<id>`` (see
`harmony.actors.drivers.containment`), so one pass over /proc finds all of them: forks,
``setsid`` daemons, orphans adopted by init.

A thread scans every `period` seconds and appends JSON lines to one file (``kind`` says which):

* ``watch``: the containments watched from now on (id -> site, workload), the period, and
  whether exits are watched through pidfds;
* ``scan``: ``t0``/``t1`` (monotonic, the pass began/ended) and per containment id the
  ``[pid, state]`` of every live process (state: the /proc letter, ``T``/``t`` = frozen);
* ``proc``: a process seen for the first time (or after an exec): its command line (short),
  its birth (a lower bound on CLOCK_MONOTONIC, from /proc starttime), its fencing token and
  its role: ``copy``, ``harmony`` (the agent's own watcher, e.g. the tether) or ``hook:<kind>``
  (a stop/fence/probe hook: the agent acting on the copy, not the copy);
* ``exit``: the process ended, seen through its pidfd at ``mono`` (an upper bound, to a
  millisecond or so): far tighter than the next scan;
* ``stop``: the scanner stopped (scans done, its CPU time); ``error``: a pass failed.

Cost: one /proc pass reads the environ of every process of the machine, about 20 us each:
2.5-5 ms of CPU per pass with 130-150 processes on the 2-core development host (printed by
tests/sim/test_scanner.py), i.e. 3-5 % of one core at the default 10 passes a second;
through psutil it would be 1.7-3.4x that (measured: see `harmony.procfs`).
Exits are exact (pidfds) and births are read from /proc, so the period mostly bounds how
soon a frozen process is noticed.

Blind spot: a process that clears its environment (``env -i``) drops the marker; the
containment's cgroup and subreaper still hold it, the scanner does not see it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from harmony import procfs
from harmony.actors.drivers.containment import scan_marked

HARMONY_MODULE = "-m harmony.actors."
"""Command lines of the agent's own helpers (the tether): they carry the containment marker
because they are spawned with the copy's environment, but they are not the copy."""
HOOK_ENV = "HARMONY_HOOK"
TOKEN_ENV = "HARMONY_FENCING_TOKEN"
CMD_CHARS = 120
MAX_WATCHED = 512
"""Pidfds held at most (beyond that, exits are found by the next scan)."""

Key = tuple[str, str]
"""(site, workload)"""


class Watched(msgspec.Struct, array_like=True):
    id: str
    site: str
    workload: str


class Watch(msgspec.Struct, tag="watch", tag_field="kind"):
    mono: float
    period: float
    pidfd: bool
    containments: list[Watched]


class Scan(msgspec.Struct, tag="scan", tag_field="kind"):
    t0: float
    t1: float
    seen: dict[str, list[tuple[int, str]]]
    """containment id -> [pid, state letter] of its live processes (ids with none left out)"""


class Proc(msgspec.Struct, tag="proc", tag_field="kind"):
    mono: float
    id: str
    pid: int
    born: float | None
    cmd: str
    token: int | None
    role: str
    watched: bool


class Exit(msgspec.Struct, tag="exit", tag_field="kind"):
    mono: float
    id: str
    pid: int


class Stop(msgspec.Struct, tag="stop", tag_field="kind"):
    mono: float
    scans: int
    cpu: float


class Error(msgspec.Struct, tag="error", tag_field="kind"):
    mono: float
    error: str


Line = Watch | Scan | Proc | Exit | Stop | Error

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Line)


class ScanFileError(ValueError):
    """A scans file that cannot be read (names the file and line)."""


def read_scan_lines(path: Path) -> list[Line]:
    """Every line of a scans file; a torn last line (a killed scanner) is skipped."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ScanFileError(f"{path}: cannot read: {e.strerror or e}") from e
    lines = data.splitlines()
    out: list[Line] = []
    for n, raw in enumerate(lines, 1):
        try:
            out.append(_decoder.decode(raw))
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            if n == len(lines) and not data.endswith(b"\n"):
                break
            raise ScanFileError(f"{path}:{n}: not a scanner line: {e}") from e
    return out


# ------------------------------------------------------------------ reading: lives
@dataclass
class Life:
    """One process of a containment as the scans saw it."""

    cid: str
    pid: int
    born: float | None = None
    cmd: str = ""
    token: int | None = None
    role: str = "copy"
    watched: bool = False
    obs: dict[int, str] = field(default_factory=dict)
    """scan index -> state letter"""
    exit: float | None = None


@dataclass
class ScanLog:
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)
    """containment id -> (site, workload): the last ``watch`` line's"""
    first: dict[str, int] = field(default_factory=dict)
    """containment id -> index of the first scan that watched it"""
    times: list[tuple[float, float]] = field(default_factory=list)
    lives: list[Life] = field(default_factory=list)

    def of(self, site: str, workload: str) -> list[Life]:
        return [x for x in self.lives if self.keys.get(x.cid) == (site, workload)]

    def watched(self, site: str, workload: str) -> str | None:
        return next((c for c, k in self.keys.items() if k == (site, workload)), None)


def scan_log(lines: Iterable[Line]) -> ScanLog:
    log = ScanLog()
    current: dict[tuple[str, int], Life] = {}

    def life(cid: str, pid: int) -> Life:
        if (cid, pid) not in current:
            current[(cid, pid)] = Life(cid, pid)
            log.lives.append(current[(cid, pid)])
        return current[(cid, pid)]

    for line in lines:
        if isinstance(line, Watch):
            log.keys = {w.id: (w.site, w.workload) for w in line.containments}
            for cid in log.keys:
                log.first.setdefault(cid, len(log.times))
            for cid in [c for c in log.first if c not in log.keys]:
                del log.first[cid]
        elif isinstance(line, Proc):
            x = life(line.id, line.pid)
            # After an exec, "copy" wins: one role of the copy makes the process the copy's.
            x.role = line.role if not x.cmd or line.role == "copy" else x.role
            x.born = line.born if x.born is None else x.born
            x.cmd, x.watched = line.cmd, x.watched or line.watched
            x.token = line.token if line.token is not None else x.token
        elif isinstance(line, Scan):
            for cid, procs in line.seen.items():
                for pid, state in procs:
                    life(cid, pid).obs[len(log.times)] = state
            log.times.append((line.t0, line.t1))
        elif isinstance(line, Exit):
            done = current.pop((line.id, line.pid), None)
            if done is not None:
                done.exit = line.mono
    log.lives = [x for x in log.lives if x.cid in log.keys]
    return log


def _starttime(pid: int) -> int | None:
    """Clock ticks since boot at which the process was forked (/proc/<pid>/stat field 22)."""
    st = procfs.stat(pid)
    return None if st is None else st.start


def _common_prefix(ids: list[str]) -> str:
    """The longest string every id starts with (one /proc pass serves every containment)."""
    first, last = min(ids), max(ids)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


def _role(cmd: str, env: Mapping[str, str]) -> str:
    if HARMONY_MODULE in cmd:
        return "harmony"
    hook = env.get(HOOK_ENV, "")
    return f"hook:{hook}" if hook and hook != "start" else "copy"


def _token(env: Mapping[str, str]) -> int | None:
    try:
        return int(env.get(TOKEN_ENV, ""))
    except ValueError:
        return None


class Scanner:
    """Scan /proc for the processes of `containments` every `period` seconds, into `path`.

    ``start()`` before the sites start, ``stop()`` after they stopped (what the copies do
    after the checks end is clipped by the checker). ``set_containments`` replaces the
    watched set (a new attempt with new data directories).
    """

    def __init__(self, path: Path, containments: Mapping[Key, str], period: float = 0.1) -> None:
        if period <= 0:
            raise ValueError(f"scanner period must be positive, got {period}")
        self.path = path
        self.period = period
        self.scans = 0
        self.cpu_seconds = 0.0
        self._lock = threading.Lock()
        self._ids: dict[str, Key] = {}
        self._pending: Mapping[Key, str] | None = dict(containments)
        self._known: dict[tuple[str, int], str] = {}  # (id, pid) -> cmd last written
        self._fds: dict[int, tuple[str, int]] = {}  # pidfd -> (id, pid)
        self._poll = select.poll()
        self._wake_r, self._wake_w = os.pipe()
        self._poll.register(self._wake_r, select.POLLIN)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-scanner", daemon=True)
        self._pidfd = hasattr(os, "pidfd_open")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._hz = os.sysconf("SC_CLK_TCK")

    def start(self) -> Scanner:
        self._thread.start()
        return self

    def set_containments(self, containments: Mapping[Key, str]) -> None:
        with self._lock:
            self._pending = dict(containments)
        os.write(self._wake_w, b"w")

    def stop(self) -> None:
        """Scan once more, write the ``stop`` line and release every descriptor."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"s")
        if self._thread.is_alive():
            self._thread.join(10.0)
        for fd in [*self._fds, self._wake_r, self._wake_w, self._fd]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()

    def __enter__(self) -> Scanner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ the thread
    def _write(self, lines: list[Line]) -> None:
        if lines:
            os.write(self._fd, b"".join(_encoder.encode(x) + b"\n" for x in lines))

    def _run(self) -> None:
        due = time.monotonic()
        while True:
            stopping = self._stopping.is_set()
            if stopping or time.monotonic() >= due:
                self._guarded(self._scan)
                due = max(due + self.period, time.monotonic())
            if stopping:
                break
            timeout = max(0.0, due - time.monotonic())
            for fd, _ in self._poll.poll(timeout * 1000):
                if fd == self._wake_r:
                    with contextlib.suppress(OSError):
                        os.read(fd, 64)
                else:
                    self._guarded(functools.partial(self._exited, fd))
        self.cpu_seconds = time.thread_time()
        self._guarded(lambda: self._write([Stop(time.monotonic(), self.scans, self.cpu_seconds)]))

    def _guarded(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as e:  # a bad pass must not end the scanning: say it and go on
            with contextlib.suppress(OSError):
                self._write([Error(time.monotonic(), f"{type(e).__name__}: {e}")])

    def _exited(self, fd: int) -> None:
        now = time.monotonic()
        cid, pid = self._fds.pop(fd)
        self._poll.unregister(fd)
        os.close(fd)
        self._known.pop((cid, pid), None)
        self._write([Exit(now, cid, pid)])

    def _scan(self) -> None:
        lines: list[Line] = []
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            self._ids = {cid: key for key, cid in pending.items()}
            watched = [Watched(cid, s, w) for cid, (s, w) in sorted(self._ids.items())]
            lines.append(Watch(time.monotonic(), self.period, self._pidfd, watched))
        prefix = _common_prefix(list(self._ids)) if self._ids else "\0"
        t0 = time.monotonic()
        found = scan_marked(prefix, (HOOK_ENV, TOKEN_ENV))
        t1 = time.monotonic()
        offset = time.clock_gettime(time.CLOCK_BOOTTIME) - time.monotonic()
        seen: dict[str, list[tuple[int, str]]] = {}
        alive: set[tuple[str, int]] = set()
        for cid, procs in found.items():
            if cid not in self._ids:
                continue
            seen[cid] = [(p.pid, p.state) for p in procs]
            for p in procs:
                alive.add((cid, p.pid))
                cmd = p.cmdline[:CMD_CHARS]
                if self._known.get((cid, p.pid)) != cmd:
                    lines.append(self._new(cid, p.pid, cmd, p.env, t1, offset))
        for gone in [k for k in self._known if k not in alive and k not in self._fds.values()]:
            del self._known[gone]  # unwatched and not seen: a reused pid is a new process
        lines.append(Scan(t0, t1, seen))
        self.scans += 1
        self._write(lines)

    def _new(
        self, cid: str, pid: int, cmd: str, env: Mapping[str, str], now: float, offset: float
    ) -> Proc:
        # `env` was read in the pass that found the marker: read again, a hook that just
        # ended (or is in the middle of an exec) would show no environment and pass for the
        # copy itself, with no token.
        first = (cid, pid) not in self._known
        self._known[(cid, pid)] = cmd
        ticks = _starttime(pid)
        # starttime is CLOCK_BOOTTIME truncated to a tick: a lower bound once shifted.
        born = None if ticks is None else ticks / self._hz - offset - 0.001
        watched = first and self._watch(cid, pid, ticks, now)
        if not first:
            watched = any(v == (cid, pid) for v in self._fds.values())
        return Proc(now, cid, pid, born, cmd, _token(env), _role(cmd, env), watched)

    def _watch(self, cid: str, pid: int, ticks: int | None, now: float) -> bool:
        """Hold a pidfd so the exit is seen when it happens, not at the next scan."""
        if not self._pidfd or len(self._fds) >= MAX_WATCHED or ticks is None:
            return False
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return False
        if _starttime(pid) != ticks:  # the pid was reused between the scan and the open
            os.close(fd)
            return False
        self._fds[fd] = (cid, pid)
        self._poll.register(fd, select.POLLIN)
        return True
