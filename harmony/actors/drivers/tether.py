"""The keeper ("tether"): the process that runs every process-driver copy, outside the agent.

    python -m harmony.actors.drivers.tether_main --containment ID --agent-pid PID \
        [--cgroup DIR] [--deadline-file F] --grace S ... -- COMMAND...

The agent must not be the only thing between a copy and the world: a SIGKILLed agent stops
nothing, and a *paused* one (SIGSTOP, a long GC or swap stall, a frozen VM thread) fences
nothing while its lease runs out and a standby starts the next copy. So the process driver
never runs COMMAND itself. It starts this keeper (its own session, not tied to the agent's
life) and the keeper:

* holds the copy's containment together: it enters the workload's cgroup (when the agent
  could create one) before it starts COMMAND, and it is a child subreaper, so double-forked
  and ``setsid`` daemons are re-parented to it rather than to init (see `containment`);
* exits the way COMMAND did, but only after killing whatever else of the containment is
  left (after the stop grace when a stop is under way), so "the keeper exited" means "the
  copy is gone" unless the driver's own check finds otherwise;
* fences the copy (SIGTERM every member, the grace, SIGKILL, confirm) when its agent dies --
  its parent pid changes -- and, for a tokened absolute-consistency copy, when the fence
  deadline in F passes without a newer one, or F is deleted or ``released``. It appends a
  `tether-fenced` event to the site's journal (the history sees the copy stop when it
  stopped, not when the agent wakes) and exits with `TETHER_FENCED`.

The agent writes F (a CLOCK_MONOTONIC time, which every process on the machine shares)
before it starts the copy and after each confirmed renewal. The keeper never extends
anything: the file only ever holds a deadline the agent computed from a confirmed renewal,
so the safety inequality of `harmony.strategies.timing` covers it unchanged. A missing,
unreadable, released or past deadline means: do not run.

The keeper ignores SIGTERM (the driver's stop signals every member of the containment; the
keeper lets COMMAND answer and mirrors it); SIGKILL ends it like any member.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harmony.guard import RELEASED, read_deadline, write_deadline
from harmony.private_files import private_dir

from .tether_cli import TETHER_FENCED, add_tether_args, tether_args

__all__ = [
    "TETHER_FENCED",
    "DeadlineHandoff",
    "TetherSpec",
    "add_tether_args",
    "deadline_dir",
    "read_deadline",
    "tether_args",
    "tether_argv",
    "write_deadline",
]


def deadline_dir(data_dir: str | Path, workload: str) -> Path:
    """Where the agent keeps a workload's fence deadlines, one file per token."""
    return Path(data_dir) / "tether" / workload


@dataclass(frozen=True)
class TetherSpec:
    """What a driver needs to keep a tokened copy fenced without its agent.

    Deadlines are per token (``<deadline_dir>/<token>.deadline``): a watcher of an old copy
    never reads, and so never fences by, the deadline of a later one.
    """

    deadline_dir: Path
    journal: Path | None = None
    incarnation: str = ""

    def deadline_file(self, token: int) -> Path:
        return self.deadline_dir / f"{token}.deadline"


class DeadlineHandoff:
    """The agent's side: hands each tokened copy's fence deadline to its watchers.

    Only a later deadline is ever written (from a confirmed renewal); when the lease is gone
    the last one stays and runs out, which is exactly the bound the safety argument already
    allows. `offer` takes the deadline on the agent's clock and writes it on the machine's
    monotonic clock, which the watcher processes share (the same clock in production; tests
    may give the agent another one). `release` marks a copy the agent *confirmed* stopped, so
    its watcher may leave without fencing.
    """

    def __init__(self, spec: TetherSpec) -> None:
        self.spec = spec
        self.last: dict[int, float] = {}
        self.released: set[int] = set()

    def reset(self) -> None:
        """Deadlines left by an earlier incarnation (or an earlier boot: the monotonic clock
        restarts) are removed: their watchers then fence at once, and no watcher can run a
        copy before this incarnation holds the lease."""
        d = self.spec.deadline_dir
        private_dir(d)
        for f in d.glob("*.deadline"):
            f.unlink(missing_ok=True)
        self.last.clear()
        self.released.clear()

    def offer(self, token: int | None, deadline: float | None, clock_now: float) -> None:
        """Write `deadline` (agent clock; `clock_now` is that clock now) for `token` if it is
        news. Raises OSError if it cannot: the watcher then fences at the old deadline (safe)."""
        if token is None or deadline is None or self.last.get(token) == deadline:
            return
        if token in self.released:  # that copy is over: nothing may run under it again
            return
        self.last[token] = deadline
        write_deadline(self.spec.deadline_file(token), time.monotonic() + (deadline - clock_now))

    def release(self, token: int | None) -> None:
        """The copy with `token` was confirmed stopped: its watcher may exit quietly."""
        if token is None or token not in self.last:
            return
        del self.last[token]
        self.released.add(token)
        write_deadline(self.spec.deadline_file(token), RELEASED)


def tether_argv(
    command: list[str],
    *,
    containment: str,
    agent_pid: int,
    grace: float,
    cgroup: str | os.PathLike[str] | None = None,
    cwd: str | None = None,
    deadline_file: Path | None = None,
    journal: Path | None = None,
    site: str = "",
    workload: str = "",
    incarnation: str = "",
    token: int | None = None,
) -> list[str]:
    """The argv that runs `command` under a keeper (`cwd`: COMMAND's working directory; the
    keeper itself stays in the agent's, where ``-m harmony...`` is importable)."""
    argv = [sys.executable, "-m", "harmony.actors.drivers.tether_main"]
    argv += ["--containment", containment, "--agent-pid", str(agent_pid)]
    argv += tether_args(grace, journal, site=site, workload=workload, incarnation=incarnation)
    if cgroup is not None:
        argv += ["--cgroup", str(cgroup)]
    if cwd:
        argv += ["--cwd", cwd]
    if deadline_file is not None:
        argv += ["--deadline-file", str(deadline_file)]
    if token is not None:
        argv += ["--token", str(token)]
    return [*argv, "--", *command]
