"""Driver test harness: an event recorder, a hooks runbook, containment checks, a tiny agent.

The truth about a copy comes from the process table and its containment (cgroup, marker),
never from what the driver reports.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harmony.actors.drivers import Driver, DriverEvent, DriverState
from harmony.actors.drivers.containment import Containment, scan_marked
from support.processes import pid_alive
from support.waiting import wait_until


def line_count(path: Path) -> int:
    """Lines in a file a test process appends to (0 while it does not exist)."""
    return len(path.read_text().splitlines()) if path.exists() else 0


class Recorder:
    """The driver's ``on_event``: keeps every event, thread-safely."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[DriverEvent] = []

    def __call__(self, event: DriverEvent) -> None:
        with self._lock:
            self.events.append(event)

    def snapshot(self) -> list[DriverEvent]:
        with self._lock:
            return list(self.events)

    def states(self) -> list[DriverState]:
        return [e.state for e in self.snapshot()]

    def count(self, state: DriverState) -> int:
        return self.states().count(state)

    def last(self, state: DriverState) -> DriverEvent:
        matches = [e for e in self.snapshot() if e.state is state]
        assert matches, f"no {state} event in {self.states()}"
        return matches[-1]

    def wait_count(self, state: DriverState, n: int, timeout: float = 5.0) -> DriverEvent:
        """Wait until at least ``n`` events of ``state`` were seen; return the n-th."""
        wait_until(lambda: self.count(state) >= n, timeout, f"{n}x {state}; saw {self.states()}")
        return [e for e in self.snapshot() if e.state is state][n - 1]


# -- a runbook in miniature, for the hooks driver --------------------------------------------

RUNBOOK = r"""#!/bin/sh
# A runbook in miniature: its workload is one background process (pid in $D/pid), started
# detached the way a service manager would (own session, none of the agent's environment).
# Flag files in $D make a hook fail, hang or misreport; every call is logged to $D/calls.
D=$(dirname "$0")
pid() { cat "$D/pid" 2>/dev/null; }
alive() {
    p=$(pid); [ -n "$p" ] || return 1
    s=$(cut -d' ' -f3 "/proc/$p/stat" 2>/dev/null) || return 1
    [ -n "$s" ] && [ "$s" != Z ]
}
[ "$1" = probe ] || echo "$1 hook=$HARMONY_HOOK token=$HARMONY_FENCING_TOKEN" \
    "containment=$HARMONY_CONTAINMENT reason=$HARMONY_REASON" >> "$D/calls"
case "$1" in
start)
    echo $$ > "$D/start-hook.pid"
    while [ -e "$D/wait-go" ] && [ ! -e "$D/go" ]; do sleep 0.01; done
    [ -e "$D/fail-start" ] && { echo "start refused by flag"; exit 3; }
    alive && { echo "already running"; exit 0; }
    rm -f "$D/pid"
    env -u HARMONY_CONTAINMENT -u HARMONY_HOOK setsid sh -c 'echo $$ > "$0"; exec sleep 1000' \
        "$D/pid" </dev/null >/dev/null 2>&1 &
    while [ ! -s "$D/pid" ]; do sleep 0.01; done
    echo "started pid $(pid)"
    [ -e "$D/hang-start" ] && sleep 1000
    exit 0 ;;
stop|fence)
    [ -e "$D/hang-$1" ] && sleep 1000
    [ -e "$D/fail-$1" ] && { echo "$1 failed by flag"; exit 1; }
    [ -e "$D/noop-$1" ] && exit 0
    p=$(pid)
    [ -n "$p" ] && kill "-$([ "$1" = stop ] && echo TERM || echo KILL)" "$p" 2>/dev/null
    while alive; do sleep 0.01; done
    echo "$1: down" ;;
probe)
    echo x >> "$D/probes"
    [ -e "$D/probe-fails" ] && { echo "probe failed by flag"; exit 1; }
    alive || { echo "not running"; exit 1; } ;;
esac
"""


class Runbook:
    """Hooks that manage a real background process; the test reads the truth from /proc."""

    def __init__(self, d: Path) -> None:
        d.mkdir(parents=True, exist_ok=True)
        self.dir = d
        self.script = d / "ctl.sh"
        self.script.write_text(RUNBOOK)
        self.script.chmod(0o755)

    def hooks(self, *, probe: bool = True, **kwargs: Any) -> dict[str, Any]:
        """Keyword arguments for HooksDriverConfig: the runbook's hooks, overridden by kwargs."""
        cmds: dict[str, Any] = {"start": f"{self.script} start", "stop": f"{self.script} stop"}
        cmds["fence"] = f"{self.script} fence"
        if probe:
            cmds["probe"] = f"{self.script} probe"
        return {**cmds, **kwargs}

    def flag(self, name: str, on: bool = True) -> None:
        path = self.dir / name
        if on:
            path.touch()
        else:
            path.unlink(missing_ok=True)

    @property
    def pid(self) -> int | None:
        text = (self.dir / "pid").read_text().strip() if (self.dir / "pid").exists() else ""
        return int(text) if text else None

    def alive(self) -> bool:
        """The workload's process exists (the process table's word, not the driver's)."""
        pid = self.pid
        return pid is not None and pid_alive(pid)

    def probes(self) -> int:
        return line_count(self.dir / "probes")

    def calls(self, hook: str = "") -> list[str]:
        path = self.dir / "calls"
        lines = path.read_text().splitlines() if path.exists() else []
        return [line for line in lines if not hook or line.startswith(hook + " ")]

    def kill(self) -> None:
        """Teardown: the workload and any hook left running go, whatever the test did."""
        for name in ("pid", "start-hook.pid"):
            path = self.dir / name
            text = path.read_text().strip() if path.exists() else ""
            if text:
                for kill in (os.killpg, os.kill):
                    with contextlib.suppress(OSError):
                        kill(int(text), signal.SIGKILL)


def marked(cid: str) -> list[int]:
    """Pids of live processes carrying containment id `cid` (the simulator's ground truth)."""
    return [p.pid for p in scan_marked(cid).get(cid, [])]


def members(cid: str) -> list[int]:
    """Pids of every live member of containment `cid`: marker, cgroup (ground truth)."""
    return [p.pid for p in Containment(cid).members()]


def assert_empty(cid: str, timeout: float = 0.0) -> None:
    """No process of containment `cid` is left (after `timeout` s at most)."""
    if timeout:
        wait_until(lambda: not members(cid), timeout, f"containment {cid} empty")
    left = Containment(cid).members()
    assert not left, f"processes of {cid} left: {left}"


AGENT_SCRIPT = """
import json, sys, threading, time
from pathlib import Path
from harmony.actors.drivers import TetherSpec, make_driver
from harmony.actors.drivers.tether import DeadlineHandoff
from harmony.config import ProcessDriverConfig

cfg = json.loads(sys.argv[1])
spec = TetherSpec(Path(cfg["deadline_dir"]), Path(cfg["journal"]), "inc-agent")
token = cfg["token"]
if token is not None:
    handoff = DeadlineHandoff(spec)
    handoff.reset()

    def renew():  # a healthy agent: the deadline stays far, only its death ends the copy
        while True:
            handoff.offer(token, time.monotonic() + 60, time.monotonic())
            time.sleep(0.2)

    renew_thread = threading.Thread(target=renew, daemon=True)
    handoff.offer(token, time.monotonic() + 60, time.monotonic())
    renew_thread.start()
driver = make_driver(
    ProcessDriverConfig(command=cfg["command"]),
    workload="w1",
    site="site-a",
    log_dir=Path(cfg["log_dir"]),
    on_event=lambda e: print(e.state, e.detail, flush=True),
    stop_grace=cfg["grace"],
    containment=cfg["containment"],
    tether=spec,
)
if not cfg["cgroup"]:  # as on a host without a writable cgroup v2
    from harmony.actors.drivers.containment import Containment

    driver._box = Containment(cfg["containment"], None)
driver.start(token)
Path(cfg["ready"]).write_text(str(driver.pid))
threading.Event().wait()
"""
"""A tiny agent: one process driver with a tether, one copy started, then it blocks."""


def daemon_cmd(
    pidfile: Path, *, setsid: bool = True, clear_env: bool = False, double: bool = True
) -> str:
    """Shell text that starts a ``sleep`` daemon ignoring SIGTERM and writing its pid to
    `pidfile`: double-forked (its parent exits at once) unless `double` is False, in its own
    session with `setsid`, without the containment marker with `clear_env`."""
    sleep = shutil.which("sleep") or "sleep"
    inner = f"trap '' TERM; echo $$ > {shlex.quote(str(pidfile))}; exec {shlex.quote(sleep)} 300"
    run = ["/bin/sh", "-c", inner]
    if setsid:
        run = [shutil.which("setsid") or "setsid", *run]
    if clear_env:
        run = [shutil.which("env") or "env", "-i", *run]
    return f"({shlex.join(run)} &)" if double else f"{shlex.join(run)} &"


def cgroup_gone(cid: str) -> bool:
    """The workload's cgroup (if this host has one) was removed: nothing left behind."""
    cgroup = Containment(cid).cgroup
    return cgroup is None or not cgroup.path.exists()


class Built:
    """What the ``build`` fixture hands out: a driver and its event recorder."""

    def __init__(self, driver: Driver[Any], events: Recorder) -> None:
        self.driver = driver
        self.events = events


@dataclass
class Agent:
    """An agent subprocess (see `AGENT_SCRIPT`) and the keeper of its copy."""

    proc: subprocess.Popen[bytes]
    keeper: int
    out: Path
    journal: Path


def kill_containment(cid: str) -> None:
    """Kill every process of containment `cid` and remove its cgroup (teardown)."""
    box = Containment(cid)
    box.kill()
    box.remove()
