"""The Linux process table, read from /proc: the one place that parses it by hand.

Why not psutil (a dependency, used for memory and CPU figures elsewhere): measured on the
2-core development host (``bench/procfs_vs_psutil.py``: CPU per pass, median of 3x40 passes):

    processes  sweep                                         by hand   psutil
    158        every environ, keep the marked (scan_marked)   4.5 ms  10.1 ms
    399        every environ, keep the marked (scan_marked)  15.2 ms  26.3 ms
    158        every stat, keep the live (`live`)             4.0 ms  12.0 ms
    399        every stat, keep the live (`live`)             8.5 ms  28.9 ms

The simulator's scanner sweeps every environment 10 times a second and a containment kill
rescans every 20 ms, so psutil would cost 1.7-3.4x the CPU on a host the workloads share.
psutil also lacks what the drivers need: the process group and session (`Stat.pgrp`,
`Stat.session`), and a start time in clock ticks since boot (its ``create_time`` is wall
time over a whole-second boot time: the scanner's births need the ticks). And importing it
adds 25-40 ms to every start of the short-lived processes that read the table here (the
simulation's hook scripts run twice a second): this module is stdlib only.

Every reader returns "nothing" for a process that is gone or unreadable: the table changes
while it is read, and a vanished process is the normal case, not an error. A sweep reads
each process's environment once, so what it keeps of one (`environ` with `keys`) comes from
the same read: a second read could catch the process in the middle of an exec.
"""

from __future__ import annotations

import os

from harmony.frozen import Frozen

TYPE_CHECKING = False  # not `typing`'s: a copy's keeper loads this module (see `frozen`)
if TYPE_CHECKING:
    from collections.abc import Iterable

GONE = ("Z", "X")
"""States of a process that runs nothing any more (a zombie, or dead)."""
FROZEN = ("T", "t")
"""States of a stopped (SIGSTOP) or traced process."""


class Stat(Frozen):
    """One process as /proc/<pid>/stat shows it (immutable, compared by value)."""

    __slots__ = ("pid", "ppid", "pgrp", "session", "state", "start")  # noqa: RUF023 (field order)
    pid: int
    ppid: int
    pgrp: int
    session: int
    state: str
    """The state letter: R, S, D, T (stopped), t (traced), Z (zombie), ..."""
    start: int
    """Start time in clock ticks since boot: with the pid, it names one process (pids are
    reused)."""

    def __init__(
        self, pid: int, ppid: int, pgrp: int, session: int, state: str, start: int
    ) -> None:
        self._set(pid=pid, ppid=ppid, pgrp=pgrp, session=session, state=state, start=start)

    @property
    def alive(self) -> bool:
        return self.state not in GONE


def pids() -> list[int] | None:
    """Every process id in /proc; None when there is no procfs to read."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    return [int(e) for e in entries if e.isdigit()] if entries else None


def stat(pid: int | str) -> Stat | None:
    """The stat line of `pid`, or None when it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp session ... starttime(22) ...": comm may hold spaces and
    # parentheses, so fields are counted from its closing one (state is field 3).
    x = raw[raw.rfind(b")") + 2 :].split()
    if len(x) < 20:
        return None
    try:
        return Stat(int(pid), int(x[1]), int(x[2]), int(x[3]), x[0].decode(), int(x[19]))
    except ValueError:
        return None


def live(exclude: Iterable[int] = ()) -> list[Stat]:
    """Every live (non-zombie) process we can see, but `exclude` (this one by default too)."""
    skip = {os.getpid(), *exclude}
    found = (stat(p) for p in pids() or [] if p not in skip)
    return [s for s in found if s is not None and s.alive]


def environ(pid: int | str, keys: Iterable[str] | None = None) -> dict[str, str]:
    """The environment `pid` was started with (only `keys`, if given); {} if unreadable."""
    wanted = None if keys is None else set(keys)
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return {}
    out = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        name = key.decode(errors="replace")
        if sep and (wanted is None or name in wanted):
            out[name] = value.decode(errors="replace")
    return out


def cmdline(pid: int | str) -> str:
    """The command line of `pid`, arguments joined by spaces ("" if unreadable)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""
