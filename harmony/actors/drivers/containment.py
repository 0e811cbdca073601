"""Containment: every process a workload starts, found and stopped as one unit.

A copy is active until the *last* process it started is gone: forks, ``setsid`` daemons and
double-forked grandchildren included. Every process of a copy carries the environment
variable ``HARMONY_CONTAINMENT=<id>`` (inherited through fork and exec), where the id names
the site's data directory and the workload, so the process table alone says which processes
belong to which copy -- for the agent, for a restarted agent looking for what an earlier
incarnation left, and for the simulator's ground-truth checker.

(Skeleton: the id and the scan. The kill and the cgroup live here too.)
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

CONTAINMENT_ENV = "HARMONY_CONTAINMENT"


def containment_id(data_dir: str | Path, site: str, workload: str) -> str:
    """A machine-wide unique id for one workload of one site (two sites on one machine,
    or two meshes with the same site names, never share one)."""
    digest = hashlib.sha1(str(Path(data_dir).resolve()).encode()).hexdigest()[:10]
    return f"{site}.{digest}.{workload}"


@dataclass(frozen=True)
class ProcInfo:
    """One live process of a containment, as the process table shows it."""

    pid: int
    ppid: int
    state: str
    """The /proc state letter: R, S, D, T (stopped: SIGSTOP), t (traced), ...; zombies are
    never listed."""
    cmdline: str

    @property
    def frozen(self) -> bool:
        return self.state in ("T", "t")


def _environ_marker(pid: str) -> str | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        return None
    key = CONTAINMENT_ENV.encode() + b"="
    for item in env.split(b"\0"):
        if item.startswith(key):
            return item[len(key) :].decode(errors="replace")
    return None


def _stat(pid: str) -> tuple[int, str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    if len(fields) < 2:
        return None
    return int(fields[1]), fields[0].decode()


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def scan_marked(prefix: str = "") -> dict[str, list[ProcInfo]]:
    """Every live (non-zombie) process carrying a containment marker that starts with
    `prefix`, by containment id. One pass over /proc; processes we may not read are missed
    (run the agent and the checker as the same user as the workloads)."""
    me = str(os.getpid())
    out: dict[str, list[ProcInfo]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for pid in entries:
        if not pid.isdigit() or pid == me:
            continue
        marker = _environ_marker(pid)
        if marker is None or not marker.startswith(prefix):
            continue
        stat = _stat(pid)
        if stat is None or stat[1] in ("Z", "X"):
            continue
        out.setdefault(marker, []).append(ProcInfo(int(pid), stat[0], stat[1], _cmdline(pid)))
    return out
