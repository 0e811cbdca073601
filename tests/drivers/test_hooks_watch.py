"""The hooks watcher: a frozen or dead agent's hooks copy is fenced at its deadline, for real.

The workload is a real background process (`Runbook`); an "agent" is either this test process
or a small subprocess that builds a HooksDriver and renews its deadline like an agent would.
Every outcome is read from the process table and the journal, never from the driver.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from support.drivers import Built, Runbook
from support.processes import pid_alive, read_pid
from support.waiting import stays, wait_until

from harmony import procfs
from harmony.actors.drivers import DriverState, TetherSpec
from harmony.actors.drivers.containment import CONTAINMENT_ENV, containment_id
from harmony.actors.drivers.hooks_tether import find_watchers
from harmony.actors.journal import JournalEvent, read_journal
from harmony.config import HooksDriverConfig
from harmony.guard import RELEASED, write_deadline

S = DriverState
Build = Callable[..., Built]


def fenced_events(spec: TetherSpec) -> list[JournalEvent]:
    assert spec.journal is not None
    if not spec.journal.exists():
        return []
    return [e for e in read_journal(spec.journal) if e.kind == "tether-fenced"]


def watcher_pids(spec: TetherSpec) -> list[int]:
    return [p.pid for p in find_watchers(spec.deadline_dir)]


def offer(spec: TetherSpec, token: int, ahead: float) -> float:
    """Write a fence deadline `ahead` seconds from now, as the agent's DeadlineHandoff does."""
    deadline = time.monotonic() + ahead
    write_deadline(spec.deadline_file(token), deadline)
    return deadline


def tethered(build: Build, rb: Runbook, spec: TetherSpec, tmp_path: Path, **kw: Any) -> Built:
    config = HooksDriverConfig(**rb.hooks(**kw))
    ident = containment_id(tmp_path, "site-a", "w1")
    return build(config, stop_grace=0.2, tether=spec, containment=ident)


def start(b: Built, token: int) -> DriverState:
    b.driver.start(token)
    wait_until(lambda: b.driver.state is not S.STARTING, 10, "start hook finished")
    return b.driver.state


# -- in this process ---------------------------------------------------------------------------


def test_no_valid_deadline_refuses_the_start(
    build: Build, runbook: Runbook, tether_spec: TetherSpec, tmp_path: Path
) -> None:
    b = tethered(build, runbook, tether_spec, tmp_path)
    assert start(b, 1) is S.UNKNOWN
    assert b.events.last(S.UNKNOWN).detail.startswith("start refused: no fence deadline in")
    offer(tether_spec, 2, -1.0)
    assert start(b, 2) is S.UNKNOWN
    assert "fence deadline in" in b.events.last(S.UNKNOWN).detail
    assert "has passed" in b.events.last(S.UNKNOWN).detail
    assert runbook.calls("start") == [] and not runbook.alive() and watcher_pids(tether_spec) == []


def test_watcher_lives_with_the_copy_and_goes_on_a_confirmed_stop(
    build: Build, runbook: Runbook, tether_spec: TetherSpec, tmp_path: Path
) -> None:
    b = tethered(build, runbook, tether_spec, tmp_path)
    offer(tether_spec, 3, 60)
    assert start(b, 3) is S.RUNNING and runbook.alive()
    (watcher,) = watcher_pids(tether_spec)
    env = procfs.environ(watcher)
    assert CONTAINMENT_ENV not in env, "a containment scan must not count the watcher"
    assert env["HARMONY_HOOK"] == "fence" and env["HARMONY_FENCING_TOKEN"] == "3"
    assert os.getsid(watcher) == watcher, "the watcher runs in its own session"

    b.driver.stop("operator move")
    assert b.driver.state is S.STOPPED and not runbook.alive()
    assert not pid_alive(watcher) and watcher_pids(tether_spec) == []
    assert fenced_events(tether_spec) == [] and runbook.calls("fence") == []


def test_released_watcher_exits_without_fencing(
    build: Build, runbook: Runbook, tether_spec: TetherSpec, tmp_path: Path
) -> None:
    b = tethered(build, runbook, tether_spec, tmp_path)
    offer(tether_spec, 4, 60)
    start(b, 4)
    (watcher,) = watcher_pids(tether_spec)
    write_deadline(tether_spec.deadline_file(4), RELEASED)
    wait_until(lambda: not pid_alive(watcher), 10, "the released watcher exits")
    assert runbook.alive(), "released: the watcher left without fencing"
    assert fenced_events(tether_spec) == [] and runbook.calls("fence") == []


def test_watcher_fences_when_the_deadline_passes(
    build: Build, runbook: Runbook, tether_spec: TetherSpec, tmp_path: Path
) -> None:
    b = tethered(build, runbook, tether_spec, tmp_path, probe_interval=0.1)
    offer(tether_spec, 5, 60)
    start(b, 5)
    (watcher,) = watcher_pids(tether_spec)
    deadline = offer(tether_spec, 5, 0.5)  # the last renewal: nobody renews after it
    wait_until(lambda: not runbook.alive(), 15, "the watcher fenced the copy")
    wait_until(lambda: fenced_events(tether_spec), 10, "a tether-fenced journal line")
    (ev,) = fenced_events(tether_spec)
    assert ev.token == 5 and ev.site == "site-a" and ev.workload == "w1"
    assert ev.incarnation == "inc-1" and ev.mono >= deadline
    assert ev.reason.startswith("fence deadline passed")
    (call,) = runbook.calls("fence")
    assert "hook=fence token=5" in call and "reason=tether: fence deadline passed" in call
    assert f"containment={b.driver.containment}" in call, "the fence hook is of the copy"
    wait_until(lambda: not pid_alive(watcher), 10, "the watcher exits after fencing")
    # The agent's own prober learns it too: the copy is no longer up.
    b.events.wait_count(S.UNKNOWN, 1, 10)


def test_a_later_start_ends_older_watchers(
    build: Build, runbook: Runbook, tether_spec: TetherSpec, tmp_path: Path
) -> None:
    # Hooks act on the workload, not on one token's copy: an old watcher left running would
    # fence the next copy at its own deadline. A restarted run actor (a new driver instance)
    # must end the watchers the previous one left.
    first = tethered(build, runbook, tether_spec, tmp_path)
    offer(tether_spec, 5, 60)
    start(first, 5)
    (old,) = watcher_pids(tether_spec)
    first.driver.close()
    assert pid_alive(old), "close() leaves the watcher: the copy was not confirmed stopped"

    second = tethered(build, runbook, tether_spec, tmp_path)
    offer(tether_spec, 9, 60)
    assert start(second, 9) is S.RUNNING
    assert not pid_alive(old)
    (new,) = watcher_pids(tether_spec)
    assert "--token" in (cmd := psutil.Process(new).cmdline())
    assert cmd[cmd.index("--token") + 1] == "9"
    copy = runbook.pid
    offer(tether_spec, 5, -1.0)  # token 5's deadline runs out: nobody may fence token 9
    stays(lambda: runbook.pid == copy and runbook.alive(), 1.0, "token 9's copy was fenced")
    assert fenced_events(tether_spec) == [] and runbook.calls("fence") == []


def test_the_watcher_module_is_light() -> None:
    code = (
        "import sys, harmony.actors.drivers.hooks_watch, harmony.actors.journal\n"
        "print([m for m in sys.modules if m.split('.')[0] in ('nats', 'pykka')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- an agent in a subprocess: frozen, killed --------------------------------------------------

AGENT = """
import json, sys, time
from pathlib import Path
from harmony.actors.drivers import DriverState, HooksDriver, TetherSpec
from harmony.config import HooksDriverConfig
from harmony.guard import write_deadline

hooks, d, token, ahead, containment = json.loads(sys.argv[1]), Path(sys.argv[2]), \\
    int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
spec = TetherSpec(d / "tether" / "w1", d / "journal.jsonl", "inc-1")
driver = HooksDriver("w1", "site-a", HooksDriverConfig(**hooks), d / "logs", lambda e: None,
                     stop_grace=0.2, containment=containment, tether=spec)
write_deadline(spec.deadline_file(token), time.monotonic() + ahead)
driver.start(token)
print("started", flush=True)
while True:  # renew like an agent with a lease: the deadline keeps `ahead` seconds away
    time.sleep(0.05)
    write_deadline(spec.deadline_file(token), time.monotonic() + ahead)
"""


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start a tiny agent; it is resumed and killed at teardown whatever happened."""
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    procs: list[subprocess.Popen[str]] = []

    def run(rb: Runbook, token: int, ahead: float, **hooks: Any) -> subprocess.Popen[str]:
        ident = containment_id(tmp_path, "site-a", "w1")
        argv = [sys.executable, str(script), json.dumps(rb.hooks(**hooks)), str(tmp_path)]
        argv += [str(token), str(ahead), ident]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        return proc

    yield run
    for proc in procs:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            with contextlib.suppress(OSError):
                proc.send_signal(sig)
        proc.wait(10)


def test_frozen_agent_is_fenced_by_its_watcher_at_the_deadline(
    agent: Callable[..., subprocess.Popen[str]], runbook: Runbook, tether_spec: TetherSpec
) -> None:
    proc = agent(runbook, 11, 1.0)
    wait_until(runbook.alive, 15, "the agent started the copy")
    wait_until(lambda: watcher_pids(tether_spec), 10, "a watcher")
    proc.send_signal(signal.SIGSTOP)
    stopped = psutil.Process(proc.pid)
    wait_until(lambda: stopped.status() == psutil.STATUS_STOPPED, 5, "frozen")
    last = float(tether_spec.deadline_file(11).read_text())  # nobody renews it any more

    wait_until(lambda: not runbook.alive(), 15, "the watcher fenced the frozen agent's copy")
    wait_until(lambda: fenced_events(tether_spec), 10, "a tether-fenced journal line")
    (ev,) = fenced_events(tether_spec)
    assert ev.token == 11 and ev.mono >= last and ev.reason.startswith("fence deadline passed")
    assert proc.poll() is None, "the agent is still frozen: the watcher did it"
    assert [c for c in runbook.calls("fence") if "reason=tether: fence deadline" in c]


def test_dead_agent_is_fenced_by_its_watcher_at_once(
    agent: Callable[..., subprocess.Popen[str]], runbook: Runbook, tether_spec: TetherSpec
) -> None:
    proc = agent(runbook, 12, 60.0)
    wait_until(runbook.alive, 15, "the agent started the copy")
    wait_until(lambda: watcher_pids(tether_spec), 10, "a watcher")
    proc.kill()
    proc.wait(10)
    t0 = time.monotonic()
    wait_until(lambda: not runbook.alive(), 15, "the watcher fenced the dead agent's copy")
    assert time.monotonic() - t0 < 30, "fenced at once, not at the deadline 60 s away"
    wait_until(lambda: fenced_events(tether_spec), 10, "a tether-fenced journal line")
    (ev,) = fenced_events(tether_spec)
    assert ev.token == 12 and ev.reason.startswith(f"agent gone (pid {proc.pid} exited)")
    wait_until(lambda: watcher_pids(tether_spec) == [], 10, "the watcher exits after fencing")


def test_start_hook_in_flight_cannot_start_the_copy_after_the_fence(
    agent: Callable[..., subprocess.Popen[str]], runbook: Runbook, tether_spec: TetherSpec
) -> None:
    # The agent freezes while its start hook still runs: the watcher fences at the deadline.
    # The start hook must not then go on to launch the copy, watched by nobody.
    runbook.flag("wait-go")
    proc = agent(runbook, 13, 1.0)
    hook = read_pid(runbook.dir / "start-hook.pid", 15)
    wait_until(lambda: watcher_pids(tether_spec), 10, "a watcher")
    proc.send_signal(signal.SIGSTOP)
    wait_until(lambda: fenced_events(tether_spec), 20, "the watcher fenced")
    assert not pid_alive(hook), "the start hook in flight was killed before the fence"
    runbook.flag("go")
    stays(lambda: runbook.pid is None, 1.0, "the killed start hook launched the copy")
