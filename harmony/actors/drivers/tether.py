"""The tether: a workload that fences itself when its agent stops renewing its lease.

The agent fences an absolute-consistency workload at its fence deadline. A *paused* agent
(SIGSTOP, a long GC or swap stall, a frozen VM thread) fences nothing: its workload would run
on while the lease expires and a standby starts the next copy. So the process driver does not
run such a workload directly but through this small process:

    python -m harmony.actors.drivers.tether_main --deadline-file F --grace S ... -- COMMAND...

The agent writes the fence deadline (a CLOCK_MONOTONIC time, which every process on the
machine shares) into F before it starts the workload and after each confirmed renewal. The
tether runs COMMAND in its own process group and, when the deadline passes without a newer
one, does exactly what the agent's fence does: SIGTERM the group, SIGKILL it after the grace.
It then appends a `tether-fenced` event to the site's journal (the history sees the copy
stop when it stopped, not when the agent wakes) and exits with `TETHER_FENCED`.

The tether never extends anything: the file only ever holds a deadline the agent computed
from a confirmed renewal, so the safety inequality of `harmony.strategies.timing` covers it
unchanged. A missing, unreadable or past deadline means: do not run.

To the agent the tether is transparent: it is the group leader of the workload's group, so
the driver's stop and fence signal COMMAND directly, and the tether exits the way COMMAND did.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harmony.guard import RELEASED, read_deadline, write_deadline

__all__ = [
    "TETHER_FENCED",
    "DeadlineHandoff",
    "TetherSpec",
    "deadline_dir",
    "read_deadline",
    "tether_argv",
    "write_deadline",
]

TETHER_FENCED = 87
"""Exit status of a tether that fenced its workload (or refused to start it)."""


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

    def reset(self) -> None:
        """Deadlines left by an earlier incarnation (or an earlier boot: the monotonic clock
        restarts) are removed: their watchers then fence at once, and no watcher can run a
        copy before this incarnation holds the lease."""
        d = self.spec.deadline_dir
        d.mkdir(parents=True, exist_ok=True)
        for f in d.glob("*.deadline"):
            f.unlink(missing_ok=True)
        self.last.clear()

    def offer(self, token: int | None, deadline: float | None, clock_now: float) -> None:
        """Write `deadline` (agent clock; `clock_now` is that clock now) for `token` if it is
        news. Raises OSError if it cannot: the watcher then fences at the old deadline (safe)."""
        if token is None or deadline is None or self.last.get(token) == deadline:
            return
        self.last[token] = deadline
        write_deadline(self.spec.deadline_file(token), time.monotonic() + (deadline - clock_now))

    def release(self, token: int | None) -> None:
        """The copy with `token` was confirmed stopped: its watcher may exit quietly."""
        if token is None or token not in self.last:
            return
        del self.last[token]
        write_deadline(self.spec.deadline_file(token), RELEASED)


def tether_argv(
    command: list[str],
    deadline_file: Path,
    grace: float,
    *,
    journal: Path | None,
    site: str,
    workload: str,
    incarnation: str,
    token: int | None,
) -> list[str]:
    """The argv that runs `command` under a tether."""
    argv = [sys.executable, "-m", "harmony.actors.drivers.tether_main"]
    argv += ["--deadline-file", str(deadline_file), "--grace", f"{grace:g}"]
    argv += ["--journal", str(journal or ""), "--site", site, "--workload", workload]
    argv += ["--incarnation", incarnation]
    if token is not None:
        argv += ["--token", str(token)]
    return [*argv, "--", *command]
