"""Containment: every process a workload starts, found and stopped as one unit.

A copy is active until the *last* process it started is gone: forks, ``setsid`` daemons and
double-forked grandchildren included. Every process of a copy carries the environment
variable ``HARMONY_CONTAINMENT=<id>`` (inherited through fork and exec), where the id names
the site's data directory and the workload, so the process table alone says which processes
belong to which copy -- for the agent, for a restarted agent looking for what an earlier
incarnation left, and for the simulator's ground-truth checker.

The marker is inherited, not enforced: a process may exec with a cleared environment. So a
`Containment` is the union of what every mechanism the host allows can see: the marker, the
workload's cgroup v2 where the agent may create one (see `cgroup`), and -- in the keeper,
which is a child subreaper -- every descendant of the keeper. `Containment.kill` empties
all of it and says whether it *confirmed* that nothing is left: that confirmation is what a
driver may call "stopped".
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time

from harmony import procfs
from harmony.frozen import Frozen

from .cgroup import Cgroup

# A copy's keeper loads this module (one keeper per copy): no `typing`, `dataclasses`,
# or `pathlib` here (see `harmony.actors.drivers.tether_main`).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from os import PathLike
    from typing import Literal

CONTAINMENT_ENV = "HARMONY_CONTAINMENT"
KILL_WAIT = 5.0
"""How long `Containment.kill` keeps killing before it declares the survivors unkillable."""
POLL = 0.02
"""How often waits rescan the containment."""
PR_SET_CHILD_SUBREAPER = 36


def containment_id(data_dir: str | PathLike[str], site: str, workload: str) -> str:
    """A machine-wide unique id for one workload of one site (two sites on one machine,
    or two meshes with the same site names, never share one)."""
    import hashlib  # the agent's side: the keeper is given its id
    from pathlib import Path

    digest = hashlib.sha1(str(Path(data_dir).resolve()).encode()).hexdigest()[:10]
    return f"{site}.{digest}.{workload}"


class ProcInfo(Frozen):
    """One live process of a containment, as the process table shows it (immutable; `env`
    takes no part in equality)."""

    __slots__ = ("pid", "ppid", "state", "cmdline", "env")  # noqa: RUF023 (field order)
    _compared = ("pid", "ppid", "state", "cmdline")
    pid: int
    ppid: int
    state: str
    """The /proc state letter: R, S, D, T (stopped: SIGSTOP), t (traced), ...; zombies are
    never listed."""
    cmdline: str
    env: dict[str, str]
    """The marker and the other variables `scan_marked` was asked for, read in the same pass
    as the marker: a second read could catch the process gone or in the middle of an exec
    (an empty environment)."""

    def __init__(
        self, pid: int, ppid: int, state: str, cmdline: str, env: dict[str, str] | None = None
    ) -> None:
        self._set(pid=pid, ppid=ppid, state=state, cmdline=cmdline, env={} if env is None else env)

    @property
    def frozen(self) -> bool:
        return self.state in procfs.FROZEN


def _marker(pid: int | str) -> str | None:
    return procfs.environ(pid, (CONTAINMENT_ENV,)).get(CONTAINMENT_ENV)


def scan_marked(prefix: str = "", keys: Iterable[str] = ()) -> dict[str, list[ProcInfo]]:
    """Every live (non-zombie) process carrying a containment marker that starts with
    `prefix`, by containment id, with the variables `keys` of its environment. One pass over
    /proc; processes we may not read are missed (run the agent and the checker as the same
    user as the workloads)."""
    me = os.getpid()
    wanted = (CONTAINMENT_ENV, *keys)
    out: dict[str, list[ProcInfo]] = {}
    for pid in procfs.pids() or []:
        if pid == me:
            continue
        env = procfs.environ(pid, wanted)
        marker = env.get(CONTAINMENT_ENV)
        if marker is None or not marker.startswith(prefix):
            continue
        st = procfs.stat(pid)
        if st is None or not st.alive:
            continue
        info = ProcInfo(pid, st.ppid, st.state, procfs.cmdline(pid), env)
        out.setdefault(marker, []).append(info)
    return out


def describe(procs: Iterable[ProcInfo], limit: int = 5) -> str:
    """``pid 12 (sleep 60), pid 13 (python worker.py)``: for event details and the journal."""
    items = list(procs)
    parts = [f"pid {p.pid} ({_short(p.cmdline)})" for p in items[:limit]]
    if len(items) > limit:
        parts.append(f"and {len(items) - limit} more")
    return ", ".join(parts) or "none"


def _short(cmdline: str, width: int = 60) -> str:
    cmdline = cmdline or "?"
    return cmdline if len(cmdline) <= width else cmdline[: width - 3] + "..."


class KillResult(Frozen):
    """What `Containment.kill` found and what, if anything, it could not kill."""

    __slots__ = ("found", "survivors", "took")
    found: list[ProcInfo]
    """Every member seen while killing (the first scan and any fork caught later)."""
    survivors: list[ProcInfo]
    """Members still alive at the deadline: the copy may still run."""
    took: float

    def __init__(
        self, found: list[ProcInfo], survivors: list[ProcInfo] | None = None, took: float = 0.0
    ) -> None:
        self._set(found=found, survivors=[] if survivors is None else survivors, took=took)

    @property
    def confirmed(self) -> bool:
        """True when a scan after the kill found no member left."""
        return not self.survivors


if TYPE_CHECKING:
    _Scanned = tuple[ProcInfo, int]
    """A member and its start time (to tell it from a later process that reuses its pid)."""


class Containment:
    """Every live process of one workload's copy, found and killed as one unit.

    `cgroup`: "auto" finds (without creating) the workload's cgroup v2 below the caller's
    own cgroup where that is possible; None means marker (and tree) only. `tree_root`: also
    count every descendant of that pid while it is itself a member (or the caller): the
    keeper is a child subreaper, so every orphan of the workload, marked or not, stays in its
    tree (the keeper passes itself; the driver sets its keeper's pid). The calling process is
    never a member of what it sees, so the keeper can kill "everything but itself".
    """

    def __init__(
        self,
        cid: str,
        cgroup: Cgroup | Literal["auto"] | None = "auto",
        *,
        tree_root: int | None = None,
    ) -> None:
        self.id = cid
        self._why = ""
        if cgroup == "auto":
            cgroup, self._why = Cgroup.for_workload(cid)
        self.cgroup: Cgroup | None = cgroup
        self.tree_root = tree_root

    @property
    def mechanism(self) -> str:
        """What holds the copy together here, for event details."""
        if self.cgroup is not None:
            return f"cgroup v2 {self.cgroup}"
        return "env marker + subreaper" + (f" ({self._why})" if self._why else "")

    # -- the keeper's side ----------------------------------------------------------------

    def prepare(self) -> None:
        """Create the cgroup; if that is impossible, fall back to the marker (no exception)."""
        if self.cgroup is None:
            return
        try:
            self.cgroup.create()
        except OSError as e:
            self._fallback(f"cannot create {self.cgroup}: {e.strerror or e}")

    def enter(self) -> bool:
        """Put the calling process (the keeper) into the cgroup, so everything it starts is
        born inside. False (and the marker only) where that is impossible."""
        self.prepare()
        if self.cgroup is None:
            return False
        try:
            self.cgroup.enter()
        except OSError as e:
            self._fallback(f"cannot enter {self.cgroup}: {e.strerror or e}")
            return False
        return True

    def remove(self) -> None:
        """Remove the cgroup once the copy is confirmed gone (kept if anything is left). The
        keeper steps out of it first: it is the last one in it."""
        if self.cgroup is None:
            return
        if self.cgroup.holds():
            with contextlib.suppress(OSError):
                self.cgroup.leave()
        self.cgroup.remove()

    def _fallback(self, why: str) -> None:
        self.cgroup, self._why = None, why

    # -- finding and killing --------------------------------------------------------------

    def members(self) -> list[ProcInfo]:
        """Live (non-zombie) processes of the copy, by pid; the caller excluded."""
        return [info for info, _ in self._scan()]

    def empty(self) -> bool:
        return not self._scan()

    def wait_empty(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the last member to go; True when none is left (two
        scans in a row: see `kill`)."""
        end = time.monotonic() + timeout
        empties = 0
        while empties < 2:
            empties = 0 if self._scan() else empties + 1
            if empties == 0 and time.monotonic() >= end:
                return False
            if empties < 2:
                time.sleep(POLL)
        return True

    def signal(self, sig: int, exclude: Iterable[int] = ()) -> list[ProcInfo]:
        """Send `sig` to every member but `exclude`; returns those it reached."""
        skip = set(exclude)
        return [i for i, start in self._scan() if i.pid not in skip and _send(i.pid, start, sig)]

    def kill(self, timeout: float = KILL_WAIT, exclude: Iterable[int] = ()) -> KillResult:
        """SIGKILL every member (but `exclude`) until none is left or `timeout` passes.

        With a cgroup the kernel kills it whole (``cgroup.kill``, or SIGKILL while frozen);
        marker and tree members are stopped first (no fork between scan and kill) and then
        killed, rescanning until a scan finds nothing.
        """
        t0 = time.monotonic()
        end = t0 + timeout
        skip = set(exclude)
        seen: dict[int, ProcInfo] = {}
        empties = 0
        while True:
            left = [(i, s) for i, s in self._scan() if i.pid not in skip]
            for info, _ in left:
                seen.setdefault(info.pid, info)
            found = sorted(seen.values(), key=lambda p: p.pid)
            # Empty only if two scans in a row say so: for a few microseconds of an exec the
            # kernel shows an empty environment, and the marker alone would miss the process.
            empties = 0 if left else empties + 1
            if empties >= 2:
                return KillResult(found, [], time.monotonic() - t0)
            if empties:
                time.sleep(POLL)
                continue
            if time.monotonic() >= end:
                return KillResult(found, [i for i, _ in left], time.monotonic() - t0)
            self._kill_cgroup(skip)
            for sig in (signal.SIGSTOP, signal.SIGKILL):
                for info, start in left:
                    _send(info.pid, start, sig)
            time.sleep(POLL)

    def _kill_cgroup(self, skip: set[int]) -> bool:
        cg = self.cgroup
        if cg is None or not cg.exists():
            return False
        if cg.holds():  # the keeper: step out first, or the kill takes it too
            with contextlib.suppress(OSError):
                cg.leave()
            if cg.holds():
                return False
        if skip & set(cg.procs()):
            return False
        try:
            if cg.kill():
                return True
            if cg.freeze(True):
                try:
                    for pid in cg.procs():
                        with contextlib.suppress(OSError):
                            os.kill(pid, signal.SIGKILL)
                finally:
                    cg.freeze(False)
                return True
        except OSError:
            return False
        return False

    def _scan(self) -> list[_Scanned]:
        me = os.getpid()
        in_cgroup = set(self.cgroup.procs()) if self.cgroup is not None else set()
        stats: dict[int, procfs.Stat] = {}
        chosen: set[int] = set()
        for pid in procfs.pids() or []:
            if pid == me:
                continue
            want = pid in in_cgroup or _marker(pid) == self.id
            if want or self.tree_root is not None:
                st = procfs.stat(pid)
                if st is None:
                    continue
                stats[pid] = st
                if want:
                    chosen.add(pid)
        root = self.tree_root
        # Only the tree of a live member (or of ourselves): a reused pid roots nothing.
        if root is not None and (root == me or root in chosen):
            children: dict[int, list[int]] = {}
            for pid, st in stats.items():
                children.setdefault(st.ppid, []).append(pid)
            stack, visited = [root], {root}
            while stack:
                for child in children.get(stack.pop(), []):
                    if child not in visited:
                        visited.add(child)
                        chosen.add(child)
                        stack.append(child)
        out = []
        for pid in sorted(chosen):
            st = stats[pid]
            if st.alive:
                out.append((ProcInfo(pid, st.ppid, st.state, procfs.cmdline(pid)), st.start))
        return out


def _send(pid: int, start: int, sig: int) -> bool:
    """Signal `pid` only if it is still the process that was scanned (same start time).

    Through a pidfd the check and the signal name the same process even if `pid` is reused
    in between; without pidfds (Linux < 5.3) the window is a few microseconds.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except OSError:
        fd = -1
    try:
        st = procfs.stat(pid)
        if st is None or st.start != start:
            return False
        if fd >= 0:
            signal.pidfd_send_signal(fd, sig)
        else:
            os.kill(pid, sig)
        return True
    except OSError:
        return False
    finally:
        if fd >= 0:
            os.close(fd)


def set_subreaper() -> bool:
    """Make the caller a child subreaper: orphans of its descendants (a double fork, a
    ``setsid`` daemon whose parent exited) are re-parented to it instead of to init, so
    they stay in its tree and it can reap them. False where the kernel refuses.

    prctl is looked up in the interpreter's own symbols (which hold libc's where Python is
    linked against a shared libc), and in libc found by name only if it is not there:
    `ctypes.util` loads `subprocess` and `shutil`, megabytes for each keeper."""
    try:
        try:
            prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            from ctypes.util import find_library

            prctl = ctypes.CDLL(find_library("c"), use_errno=True).prctl
        return int(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False
