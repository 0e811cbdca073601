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

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TETHER_FENCED = 87
"""Exit status of a tether that fenced its workload (or refused to start it)."""


@dataclass(frozen=True)
class TetherSpec:
    """What a process driver needs to run its workload under a tether."""

    deadline_file: Path
    journal: Path | None = None
    incarnation: str = ""


def deadline_path(data_dir: str | Path, workload: str) -> Path:
    """Where the agent keeps a workload's fence deadline for its tether."""
    return Path(data_dir) / "tether" / f"{workload}.deadline"


def write_deadline(path: Path, deadline: float) -> None:
    """Atomically replace the deadline in `path` (readers never see a torn number)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{deadline:.6f}\n")
    os.replace(tmp, path)


class DeadlineHandoff:
    """The agent's side: hands a workload's fence deadline to its tether.

    Only a later deadline is ever written (from a confirmed renewal); when the lease is gone
    the last one stays and runs out, which is exactly the bound the safety argument already
    allows. `offer` takes the deadline on the agent's clock and writes it on the machine's
    monotonic clock, which the tether process shares (the same clock in production; tests
    may give the agent another one).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last: float | None = None

    def reset(self) -> None:
        """A deadline left by an earlier incarnation (or an earlier boot: the monotonic clock
        restarts) must not let a tether run before this one holds the lease."""
        self.path.unlink(missing_ok=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.last = None

    def offer(self, deadline: float | None, clock_now: float) -> None:
        """Write `deadline` (agent clock; `clock_now` is that clock now) if it is news.
        Raises OSError if it cannot: the tether then fences at the old deadline (safe)."""
        if deadline is None or deadline == self.last:
            return
        self.last = deadline
        write_deadline(self.path, time.monotonic() + (deadline - clock_now))


def read_deadline(path: Path) -> float | None:
    try:
        return float(path.read_text())
    except (OSError, ValueError):
        return None


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
