"""CPU per sweep of the process table: `harmony.procfs` (by hand) against psutil.

    .venv/bin/python bench/procfs_vs_psutil.py [EXTRA]

Starts EXTRA (default 300) ``sleep`` processes, 20 of them carrying a containment marker,
then times each sweep the agent and the simulator make (CPU of this thread, median of 3
rounds of 40 passes, interleaved: the machine is shared). The numbers in the docstring of
`harmony.procfs` come from here: they are why that module reads /proc itself.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import psutil

from harmony import procfs
from harmony.actors.drivers.containment import CONTAINMENT_ENV, ProcInfo, scan_marked

MARKED = 20
KEYS = ("HARMONY_HOOK", "HARMONY_FENCING_TOKEN")
PREFIX = "bench."
GONE = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


def marked_psutil() -> dict[str, list[ProcInfo]]:
    """`scan_marked(PREFIX, KEYS)` through psutil: marker, keys and state of one read each."""
    me = os.getpid()
    out: dict[str, list[ProcInfo]] = {}
    for p in psutil.process_iter():
        if p.pid == me:
            continue
        try:
            env = p.environ()
            marker = env.get(CONTAINMENT_ENV)
            if marker is None or not marker.startswith(PREFIX):
                continue
            with p.oneshot():
                state, ppid = p.status(), p.ppid()
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if state not in GONE:
            kept = {k: env[k] for k in (CONTAINMENT_ENV, *KEYS) if k in env}
            out.setdefault(marker, []).append(ProcInfo(p.pid, ppid, state, cmd, kept))
    return out


def live_psutil() -> list[tuple[int, int, str, float, int, int]]:
    """`procfs.live()` through psutil (which has no group nor session: two more syscalls)."""
    out: list[tuple[int, int, str, float, int, int]] = []
    for p in psutil.process_iter():
        try:
            with p.oneshot():
                state = p.status()
                if state in GONE:
                    continue
                row = (p.pid, p.ppid(), state, p.create_time(), os.getpgid(p.pid), os.getsid(p.pid))
        except (psutil.Error, OSError):
            continue
        out.append(row)
    return out


def cpu_per_pass(sweep: Callable[[], object], passes: int = 40) -> float:
    sweep()
    times = []
    for _ in range(passes):
        t = time.thread_time()
        sweep()
        times.append(time.thread_time() - t)
    return statistics.median(times)


def main(extra: int) -> None:
    cases: list[tuple[str, Callable[[], object]]] = [
        ("every environ, keep the marked: scan_marked", lambda: scan_marked(PREFIX, KEYS)),
        ("  the same through psutil", marked_psutil),
        ("every stat, keep the live: procfs.live", procfs.live),
        ("  the same through psutil", live_psutil),
    ]
    procs = []
    try:
        for i in range(extra):
            env = dict(os.environ)
            if i < MARKED:
                env[CONTAINMENT_ENV] = f"{PREFIX}{i % 4}"
            procs.append(subprocess.Popen(["sleep", "600"], env=env))
        total = len(psutil.pids())
        rounds: list[list[float]] = [[] for _ in cases]
        for _ in range(3):
            for (_, sweep), times in zip(cases, rounds, strict=True):
                times.append(cpu_per_pass(sweep))
        print(f"{total} processes; CPU per pass (and per process):")
        for (name, _), times in zip(cases, rounds, strict=True):
            m = statistics.median(times)
            print(f"  {name:48s} {m * 1e3:6.1f} ms  ({m / total * 1e6:3.0f} us)")
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
