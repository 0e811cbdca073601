"""ProcessDriver against real processes: lifecycle, env, restarts, group kill, failures."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.drivers import Built, assert_empty, line_count
from support.processes import pid_alive, read_pid
from support.waiting import stays, wait_until

from harmony.actors.drivers import DriverState, ProcessDriver
from harmony.config import ProcessDriverConfig

S = DriverState
Build = Callable[..., Built]
PY = sys.executable


def py(code: str, **kwargs: Any) -> ProcessDriverConfig:
    return ProcessDriverConfig(command=[PY, "-c", code], **kwargs)


SLEEPER = "import time; time.sleep(60)"


def test_start_stop_long_running_process(build: Build) -> None:
    b = build(py(SLEEPER))
    d = b.driver
    assert d.state is S.STOPPED
    d.start(None)
    assert d.state is S.RUNNING
    pid = b.events.last(S.RUNNING).pid
    assert pid is not None and pid_alive(pid)
    assert d.probe()

    d.start(None)  # already running: a logged no-op
    assert b.events.count(S.STARTING) == 1

    d.stop("test over")
    assert d.state is S.STOPPED
    assert not pid_alive(pid), "stop() returned while the process still exists"
    assert not d.probe()
    assert b.events.states() == [S.STARTING, S.RUNNING, S.STOPPING, S.STOPPED]
    stopped = b.events.last(S.STOPPED)
    assert stopped.exit_code == -signal.SIGTERM
    assert "SIGTERM" in stopped.detail and "test over" in stopped.detail

    d.stop("again")  # nothing runs: still exactly one report, and it says so
    assert b.events.states()[4:] == [S.STOPPED]
    assert "nothing of" in b.events.last(S.STOPPED).detail


def test_token_and_env_reach_the_process(
    build: Build, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "env.txt"
    code = (
        "import os, time, pathlib\n"
        "keys = ['HARMONY_WORKLOAD', 'HARMONY_SITE', 'HARMONY_FENCING_TOKEN', 'EXTRA']\n"
        f"pathlib.Path({str(out)!r}).write_text("
        "'\\n'.join(f'{k}={os.environ.get(k)}' for k in keys))\n"
        "time.sleep(60)\n"
    )
    b = build(py(code, env={"EXTRA": "x1"}, cwd=str(tmp_path)), workload="db", site="east")
    b.driver.start(42)
    wait_until(lambda: out.exists() and "EXTRA" in out.read_text(), 5, "env written")
    assert out.read_text().splitlines() == [
        "HARMONY_WORKLOAD=db",
        "HARMONY_SITE=east",
        "HARMONY_FENCING_TOKEN=42",
        "EXTRA=x1",
    ]
    assert b.events.last(S.RUNNING).token == 42
    b.driver.stop("next")

    # Without a lease there is no token, even if the agent's own environment had one.
    monkeypatch.setenv("HARMONY_FENCING_TOKEN", "999")
    out.unlink()
    b.driver.start(None)
    wait_until(lambda: out.exists() and "EXTRA" in out.read_text(), 5, "env written")
    assert "HARMONY_FENCING_TOKEN=None" in out.read_text().splitlines()


def counter_script(counter: Path, code: int, extra: str = "") -> str:
    return (
        f"import pathlib, sys, time\np = pathlib.Path({str(counter)!r})\n"
        "with p.open('a') as f: f.write('run\\n')\n"
        f"{extra}sys.exit({code})\n"
    )


def test_on_failure_restarts_with_backoff(build: Build, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    b = build(py(counter_script(counter, 3), restart="on-failure", restart_delay=0.05))
    b.driver.start(5)
    b.events.wait_count(S.EXITED, 3)
    exited = [e for e in b.events.snapshot() if e.state is S.EXITED][:3]
    assert [e.exit_code for e in exited] == [3, 3, 3]
    # Delay doubles after each quick failure.
    assert [e.detail.split("restarting in ")[1].split(" s")[0] for e in exited] == [
        "0.05",
        "0.1",
        "0.2",
    ]
    assert all(e.token == 5 for e in b.events.snapshot())
    b.driver.stop("enough")
    assert b.driver.state is S.STOPPED
    runs = line_count(counter)
    starts = b.events.count(S.STARTING)
    # The pending restart was cancelled: nothing starts after stop (its delay was <= 0.4 s).
    stays(
        lambda: b.events.count(S.STARTING) == starts and line_count(counter) == runs,
        0.6,
        "a restart happened after stop()",
    )


def test_backoff_resets_after_a_long_run(build: Build, tmp_path: Path) -> None:
    counter, go = tmp_path / "runs", tmp_path / "go"
    now = [1000.0]
    wait_go = (
        "if len(p.read_text().splitlines()) >= 3:\n"
        f"    while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.01)\n"
    )
    b = build(
        py(counter_script(counter, 1, wait_go), restart="on-failure", restart_delay=0.05),
        monotonic=lambda: now[0],
    )
    b.driver.start(None)
    b.events.wait_count(S.EXITED, 2)
    wait_until(lambda: line_count(counter) >= 3, 5, "third run")
    now[0] += 11.0  # the third run "lasts" 11 s on the injected clock
    go.touch()
    third = b.events.wait_count(S.EXITED, 3)
    assert "restarting in 0.05 s" in third.detail, third.detail


def test_never_does_not_restart_and_on_failure_ignores_success(
    build: Build, tmp_path: Path
) -> None:
    counter = tmp_path / "runs"
    never = build(py(counter_script(counter, 1), restart="never", restart_delay=0.01))
    never.driver.start(None)
    ev = never.events.wait_count(S.EXITED, 1)
    assert ev.exit_code == 1 and "restarting" not in ev.detail
    clean = build(py(counter_script(counter, 0), restart="on-failure", restart_delay=0.01))
    clean.driver.start(None)
    clean.events.wait_count(S.EXITED, 1)
    # 20x the restart delay: a restart would have happened by now.
    stays(lambda: line_count(counter) == 2, 0.2, "a restart happened")
    assert never.events.count(S.STARTING) == 1 and clean.events.count(S.STARTING) == 1
    assert never.driver.state is S.EXITED and not never.driver.probe()


def test_always_restarts_after_clean_exit(build: Build, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    b = build(py(counter_script(counter, 0), restart="always", restart_delay=0.02))
    b.driver.start(None)
    b.events.wait_count(S.RUNNING, 3)
    assert b.events.last(S.EXITED).exit_code == 0


def test_fence_kills_a_process_ignoring_sigterm(build: Build, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    code = (
        "import signal, time, pathlib\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"pathlib.Path({str(ready)!r}).touch()\ntime.sleep(60)\n"
    )
    b = build(py(code, restart="always"), stop_grace=0.3)
    b.driver.start(9)
    pid = b.driver.pid
    assert pid is not None
    wait_until(ready.exists, 5, "SIGTERM ignored")
    t0 = time.monotonic()
    b.driver.fence("lease lost")
    took = time.monotonic() - t0
    assert b.driver.state is S.FENCED
    assert not pid_alive(pid)
    assert 0.3 <= took < 3.0
    fenced = b.events.last(S.FENCED)
    assert fenced.exit_code == -signal.SIGKILL and "SIGKILL" in fenced.detail
    assert b.events.states()[-2:] == [S.STOPPING, S.FENCED]
    assert b.events.count(S.STARTING) == 1  # restart="always" does not apply to a fence


def test_command_not_found_fails_clearly(build: Build, tmp_path: Path) -> None:
    b = build(ProcessDriverConfig(command=["harmony-no-such-command", "--x"], restart="always"))
    b.driver.start(1)
    assert b.driver.state is S.UNKNOWN
    failed = b.events.last(S.UNKNOWN)
    assert "command not found: harmony-no-such-command" in failed.detail
    assert b.events.states() == [S.STARTING, S.UNKNOWN]
    assert any("command not found" in line for line in b.driver.output_tail())

    bad_cwd = build(py(SLEEPER, cwd=str(tmp_path / "missing")), workload="w2")
    bad_cwd.driver.start(None)
    assert "working directory not found" in bad_cwd.events.last(S.UNKNOWN).detail

    b.driver.stop("cleanup")  # failed -> stopped, no process involved
    assert b.driver.state is S.STOPPED


def test_children_are_killed_with_the_group(build: Build, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # The child ignores SIGTERM (and says so only once it does), and so does the shell: only
    # the SIGKILL after the grace gets them.
    code = (
        "import os, signal, time, pathlib\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"pathlib.Path({str(pidfile)!r}).write_text(str(os.getpid()))\ntime.sleep(60)\n"
    )
    script = f"trap '' TERM; {shlex.quote(PY)} -c {shlex.quote(code)} & wait"
    b = build(ProcessDriverConfig(command=["/bin/sh", "-c", script]), stop_grace=0.3)
    b.driver.start(None)
    child = read_pid(pidfile)
    assert pid_alive(child)
    b.driver.stop("bye")
    assert not pid_alive(child), "a child of the workload survived stop()"
    assert "SIGKILL" in b.events.last(S.STOPPED).detail
    assert_empty(b.driver.containment)


def test_orphans_of_an_exited_workload_are_killed(build: Build, tmp_path: Path) -> None:
    child_pid = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {child_pid}; exit 4"
    b = build(ProcessDriverConfig(command=["/bin/sh", "-c", script], restart="never"))
    b.driver.start(None)
    exited = b.events.wait_count(S.EXITED, 1)
    assert exited.exit_code == 4 and not exited.restarting
    # EXITED is a fact: by the time it is reported, the orphan is gone.
    assert not pid_alive(read_pid(child_pid)), "EXITED reported while the orphan runs"
    assert_empty(b.driver.containment)


def test_close_stops_the_process_and_later_calls_are_harmless(build: Build) -> None:
    b = build(py(SLEEPER))
    b.driver.start(None)
    pid = b.driver.pid
    assert pid is not None
    b.driver.close()
    assert not pid_alive(pid)
    assert b.driver.state is S.STOPPED
    b.driver.start(None)  # closed: ignored
    assert b.driver.state is S.STOPPED and b.driver.pid is None
    b.driver.close()


def test_fence_when_idle_and_during_pending_restart(build: Build, tmp_path: Path) -> None:
    idle = build(py(SLEEPER))
    idle.driver.fence("no lease")
    assert idle.driver.state is S.FENCED
    idle.driver.stop("after fence")
    idle.driver.fence("again")
    # Every call reports, also with nothing to do: the caller waits for that report.
    assert idle.events.states() == [S.FENCED, S.STOPPED, S.FENCED]
    assert all("nothing of" in e.detail for e in idle.events.snapshot())
    idle.driver.start(3)  # a fenced workload may start again under a new token
    assert idle.driver.state is S.RUNNING

    counter = tmp_path / "runs"
    b = build(py(counter_script(counter, 1), restart_delay=0.3), workload="w2")
    b.driver.start(None)
    b.events.wait_count(S.EXITED, 1)
    b.driver.fence("lease lost")
    assert b.driver.state is S.FENCED
    stays(lambda: line_count(counter) == 1, 0.5, "restarted after fence")  # past the delay
    assert b.events.count(S.STARTING) == 1


def test_output_tail_has_the_workload_output(build: Build, tmp_path: Path) -> None:
    code = "import sys\nfor i in range(100): print(f'line {i}')\nsys.exit(0)"
    b = build(py(code, restart="never"))
    b.driver.start(None)
    b.events.wait_count(S.EXITED, 1)
    tail = b.driver.output_tail(3)
    assert tail[:2] == ["line 98", "line 99"] and "exited with code 0" in tail[2]
    assert isinstance(b.driver, ProcessDriver)
    assert (tmp_path / "logs" / "w1.log").exists()
    assert os.path.getsize(tmp_path / "logs" / "w1.log") > 0
