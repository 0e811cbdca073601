"""Freezing a site: SIGSTOP the processes a paused machine (or a stuck agent) would stop.

A site is more than its agent's process group: its nats-server runs beside it, and since
issue 8 a workload's keepers, tethers and watchers run in sessions of their own, outside the
agent's group, so that they survive the agent. Every process of a workload carries its
containment marker (`harmony.actors.drivers.containment`), so one scan of /proc finds them.

Among those, *agent-side* processes are harmony's own (a module under ``harmony.actors``:
tethers, keepers, watchers; and the simulation's hook scripts, which the agent runs): a
frozen agent and tether leave the workload itself running, which is what only the
workload's own fence deadline (the guard) can stop. Everything else marked is the workload.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from harmony import procfs
from harmony.actors.drivers.containment import ProcInfo, scan_marked

AGENT_SIDE = ("harmony.actors.", "harmony/actors/", "harmony.sim.hook_scripts")
"""Command-line fragments of harmony's own processes inside a containment."""
ROUNDS = 5
"""Stop, look again, stop what appeared meanwhile (a fork racing the first pass)."""


def agent_side(p: ProcInfo) -> bool:
    return any(part in p.cmdline for part in AGENT_SIDE)


def proc_state(pid: int) -> str:
    """The /proc state letter of `pid` ("" when it is gone)."""
    st = procfs.stat(pid)
    return "" if st is None else st.state


def marked(containments: Iterable[str], agent_side_only: bool = False) -> list[int]:
    """Live processes of these containments (only harmony's own ones if asked)."""
    ids = set(containments)
    found = scan_marked()
    return [
        p.pid
        for cid, procs in found.items()
        if cid in ids
        for p in procs
        if not agent_side_only or agent_side(p)
    ]


def _signal(pids: Iterable[int], sig: int) -> None:
    me = os.getpid()
    for pid in pids:
        if pid != me:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


@dataclass
class Frozen:
    """What one `freeze` stopped, to be continued by the `thaw`."""

    what: str
    group: int | None = None
    """The agent's process group (stopped as one with killpg)."""
    pids: list[int] = field(default_factory=list)


def freeze(
    what: str, agent_group: int | None, servers: Sequence[int], containments: Sequence[str]
) -> Frozen:
    """SIGSTOP the site's processes for `what` (``site``, ``agent+tether``, ``agent``).

    The agent first (it must not see its tether stop), then the containments, again until
    a scan finds nothing new, then the server.
    """
    done = Frozen(what, agent_group)

    def stop(pids: Iterable[int]) -> None:
        new = [p for p in pids if p not in done.pids]
        _signal(new, signal.SIGSTOP)
        done.pids.extend(new)

    if agent_group is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(agent_group, signal.SIGSTOP)
    if what != "agent":
        for _ in range(ROUNDS):
            pids = marked(containments, agent_side_only=what == "agent+tether")
            if not set(pids) - set(done.pids):
                break
            stop(pids)
    if what == "site":
        stop(servers)
    return done


def thaw(frozen: Frozen, containments: Sequence[str]) -> None:
    """SIGCONT what was stopped, and any process of the containments (a stopped fork).

    The workload first: a resumed machine gives no order, and the worst one lets the copy
    act before anything that could fence it wakes up. Only the copy's own deadline check
    (the guard) bounds that moment (`Checks.resume_bound`); then harmony's own processes,
    the agent and the server.
    """
    found = scan_marked()
    ids = set(containments)
    procs = [p for cid, ps in found.items() if cid in ids for p in ps]
    workload = [p.pid for p in procs if not agent_side(p)]
    helpers = [p.pid for p in procs if agent_side(p)]
    _signal(workload, signal.SIGCONT)
    _signal(helpers, signal.SIGCONT)
    if frozen.group is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(frozen.group, signal.SIGCONT)
    _signal([p for p in frozen.pids if p not in workload and p not in helpers], signal.SIGCONT)
