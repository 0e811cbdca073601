"""The hooks driver's tether, driver side: the watcher's argv, and finding and ending watchers.

A `hooks` copy is the user's (a systemd unit, a VM, a remote service): the agent cannot hold
its processes, only run its hooks. So a tokened copy of an absolute-consistency workload gets
a *watcher* (`hooks_watch`), a small process outside the agent that runs the fence hook when
the copy's fence deadline passes or the agent dies. This module is what the driver and the
watcher share; it is stdlib-only (plus `harmony.guard`, `procfs` and `tether`'s argument
helpers), so the watcher stays light.

The watcher does not carry ``HARMONY_CONTAINMENT``: a containment scan (the simulator's ground
truth, a restarted agent's search for leftovers) would count it as a process of the copy. It
carries ``HARMONY_HOOKS_WATCH=<deadline dir>`` instead, by which a driver finds the watchers of
its workload, also those an earlier driver instance (a restarted run actor) left.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time
from pathlib import Path

from harmony import procfs
from harmony.guard import TOKEN_ENV

from .containment import CONTAINMENT_ENV
from .tether import tether_args

WATCH_ENV = "HARMONY_HOOKS_WATCH"
"""Marks a watcher process; the value is its workload's deadline directory (absolute)."""
HOOK_ENV = "HARMONY_HOOK"
REASON_ENV = "HARMONY_REASON"
KILL_WAIT = 5.0

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def clean_text(text: str) -> str:
    """`text` with control characters (NUL, newlines, ESC, ...) and lone surrogates escaped as
    ``\\xNN``: a reason from the wire becomes a safe env value and one log line, never a crash."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def watch_marker(deadline_dir: Path) -> str:
    return os.path.abspath(deadline_dir)


def watch_argv(
    command: str,
    deadline_file: Path,
    *,
    timeout: float,
    grace: float,
    journal: Path | None,
    site: str,
    workload: str,
    incarnation: str,
    token: int,
    containment: str,
    agent_pid: int,
) -> list[str]:
    """The argv of a watcher that fences with the shell command `command`."""
    argv = [sys.executable, "-m", "harmony.actors.drivers.hooks_watch"]
    argv += ["--deadline-file", str(deadline_file), "--timeout", f"{timeout:g}"]
    argv += tether_args(grace, journal, site=site, workload=workload, incarnation=incarnation)
    argv += ["--token", str(token)]
    argv += ["--containment", containment, "--agent-pid", str(agent_pid)]
    return [*argv, "--", command]


# -- the process table -----------------------------------------------------------------------


def marked(containment: str, token: int, hook: str) -> list[procfs.Stat]:
    """Processes run by `hook` of the copy with `token` (and whatever they started that kept
    the environment): they carry the containment id, the token and HARMONY_HOOK."""
    want = {CONTAINMENT_ENV: containment, TOKEN_ENV: str(token), HOOK_ENV: hook}
    out = []
    for p in procfs.live():
        env = procfs.environ(p.pid, want)
        if all(env.get(k) == v for k, v in want.items()):
            out.append(p)
    return out


def find_watchers(deadline_dir: Path) -> list[procfs.Stat]:
    """The live watchers of the workload whose deadlines live in `deadline_dir`."""
    marker = watch_marker(deadline_dir)
    return [
        p for p in procfs.live() if procfs.environ(p.pid, (WATCH_ENV,)).get(WATCH_ENV) == marker
    ]


def kill_all(procs: list[procfs.Stat], wait: float = KILL_WAIT) -> list[int]:
    """SIGKILL these processes (and their process groups); the pids still alive after `wait`
    (uninterruptible sleep), [] when all went."""
    mine = os.getpgrp()
    for p in procs:
        with contextlib.suppress(OSError):
            os.kill(p.pid, signal.SIGKILL)
        if p.pgrp not in (mine, 0, 1):  # never our own group, whatever a process claims
            with contextlib.suppress(OSError):
                os.killpg(p.pgrp, signal.SIGKILL)
    end = time.monotonic() + wait
    while True:
        left = [p.pid for p in procs if _same(p)]
        if not left or time.monotonic() >= end:
            return left
        time.sleep(0.01)


def _same(p: procfs.Stat) -> bool:
    """`p` still runs (the same process, not a reuse of its pid, and not a zombie)."""
    now = procfs.stat(p.pid)
    return now is not None and now.alive and now.start == p.start


def end_watchers(deadline_dir: Path) -> list[int]:
    """SIGKILL every watcher of the workload and everything in its session (a fence command
    in flight included). Returns pids that survived. Only for copies that were confirmed
    stopped or are about to be replaced by a new start with a new watcher."""
    watchers = find_watchers(deadline_dir)
    if not watchers:
        return []
    sessions = {w.pid for w in watchers if w.session == w.pid}
    members = [p for p in procfs.live() if p.session in sessions]
    return kill_all(watchers + [p for p in members if p not in watchers])
