"""HooksDriver against real /bin/sh hooks: transitions, failures, timeouts, the prober."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.drivers import Built, Runbook, line_count
from support.processes import pid_alive, read_pid
from support.waiting import stays, wait_until

from harmony.actors.drivers import DriverState
from harmony.config import HooksDriverConfig

S = DriverState
Build = Callable[..., Built]


def hooks(d: Path, **kwargs: Any) -> HooksDriverConfig:
    """Hooks that keep their 'workload' as files in ``d``, like a runbook would."""
    kwargs.setdefault("start", f"echo token=$HARMONY_FENCING_TOKEN; touch {d}/up")
    kwargs.setdefault("stop", f'echo "stop: $HARMONY_REASON"; rm -f {d}/up')
    return HooksDriverConfig(**kwargs)


def start(b: Built, token: int | None, timeout: float = 5.0) -> DriverState:
    """start() returns at once for hooks; wait for the start hook's outcome."""
    b.driver.start(token)
    wait_until(lambda: b.driver.state is not S.STARTING, timeout, "start hook finished")
    return b.driver.state


def test_start_stop_transitions_and_env(build: Build, tmp_path: Path) -> None:
    b = build(hooks(tmp_path, env={"EXTRA": "e1"}), workload="db", site="east")
    d = b.driver
    assert start(b, 17) is S.RUNNING and (tmp_path / "up").exists()
    assert "token=17" in d.output_tail()
    assert d.probe()  # no probe hook: healthy while running
    d.start(18)  # running: no-op, hook not run again
    assert b.events.states() == [S.STARTING, S.RUNNING]

    d.stop("maintenance")
    assert d.state is S.STOPPED and not (tmp_path / "up").exists()
    assert "stop: maintenance" in d.output_tail()
    assert not d.probe()
    d.stop("again")  # runs the (idempotent) hook again: every stop reports its outcome
    assert "stop: again" in d.output_tail()
    stopped = [S.STOPPING, S.STOPPED]
    assert b.events.states() == [S.STARTING, S.RUNNING, *stopped, *stopped]
    assert all(e.token == 17 and e.workload == "db" for e in b.events.snapshot())

    env_hook = "echo $HARMONY_WORKLOAD $HARMONY_SITE $HARMONY_HOOK $EXTRA"
    b2 = build(hooks(tmp_path, start=env_hook, env={"EXTRA": "e1"}), workload="db", site="east")
    start(b2, None)
    assert "db east start e1" in b2.driver.output_tail()


def test_failing_start_hook_reports_code_and_output(build: Build, tmp_path: Path) -> None:
    b = build(hooks(tmp_path, start="echo 'port 5432 in use' >&2; exit 3"))
    assert start(b, 1) is S.UNKNOWN
    detail = b.events.last(S.UNKNOWN).detail
    assert "exited with code 3" in detail and "port 5432 in use" in detail
    b.driver.stop("clean up")  # the stop hook still runs after a failed start
    assert b.driver.state is S.STOPPED


def test_start_hook_that_backgrounds_a_daemon_returns(build: Build, tmp_path: Path) -> None:
    # The daemon inherits the hook's stdout (the log file): we wait for the hook's exit,
    # not for end of output, so start returns at once.
    pidfile = tmp_path / "daemon.pid"
    cfg = hooks(
        tmp_path,
        start=f"sleep 60 & echo $! > {pidfile}",
        stop=f"kill $(cat {pidfile})",
        timeout=10,
    )
    b = build(cfg)
    t0 = time.monotonic()
    assert start(b, None) is S.RUNNING
    assert time.monotonic() - t0 < 2
    daemon = read_pid(pidfile)
    assert pid_alive(daemon), "a successful start hook's daemon must be left running"
    b.driver.stop("done")
    wait_until(lambda: not pid_alive(daemon), 3, "daemon stopped by the stop hook")


def test_fence_hook_and_fallback_to_stop_hook(build: Build, tmp_path: Path) -> None:
    b = build(hooks(tmp_path, fence=f'echo "$HARMONY_REASON" > {tmp_path}/fenced'))
    start(b, 4)
    b.driver.fence("lease lost")
    assert b.driver.state is S.FENCED
    assert (tmp_path / "fenced").read_text().strip() == "lease lost"
    assert b.events.states()[-2:] == [S.STOPPING, S.FENCED]
    (tmp_path / "fenced").unlink()
    b.driver.fence("again")  # fenced already: the hook runs anyway, and reports
    assert (tmp_path / "fenced").read_text().strip() == "again"
    assert b.events.states()[-2:] == [S.STOPPING, S.FENCED]
    b.driver.stop("after")
    assert b.events.states()[-2:] == [S.STOPPING, S.STOPPED] and b.driver.state is S.STOPPED

    # No fence hook: the stop hook fences. It runs even when we think nothing runs,
    # because an earlier agent may have started the workload.
    (tmp_path / "up").touch()
    b2 = build(hooks(tmp_path), workload="w2")
    b2.driver.fence("startup fence")
    assert b2.driver.state is S.FENCED and not (tmp_path / "up").exists()


def test_failing_fence_hook_is_reported_unknown(build: Build, tmp_path: Path) -> None:
    b = build(hooks(tmp_path, fence="echo 'ipmi unreachable'; exit 2"))
    start(b, 1)
    b.driver.fence("lease lost")
    assert b.driver.state is S.UNKNOWN
    detail = b.events.last(S.UNKNOWN).detail
    assert detail.startswith("fence hook exited with code 2") and "ipmi unreachable" in detail


def test_timed_out_hook_is_killed_with_its_group(build: Build, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    cfg = hooks(tmp_path, fence=f"sleep 30 & echo $! > {pidfile}; wait", timeout=0.5)
    b = build(cfg, stop_grace=0.2)
    start(b, 1)
    t0 = time.monotonic()
    b.driver.fence("lease lost")
    took = time.monotonic() - t0
    assert b.driver.state is S.UNKNOWN
    assert "timed out after 0.5 s" in b.events.last(S.UNKNOWN).detail
    assert 0.5 <= took < 3
    assert not pid_alive(read_pid(pidfile)), "the timed-out hook's child survived"

    slow = build(hooks(tmp_path, start="sleep 30", timeout=0.3), workload="w2", stop_grace=0.2)
    assert start(slow, None) is S.UNKNOWN
    assert "start hook timed out" in slow.events.last(S.UNKNOWN).detail


def test_probe_hook_on_demand(build: Build, tmp_path: Path) -> None:
    b = build(hooks(tmp_path, probe=f"test -f {tmp_path}/healthy", probe_interval=60))
    assert not b.driver.probe()
    (tmp_path / "healthy").touch()
    assert b.driver.probe()


def test_prober_reports_only_transitions(build: Build, tmp_path: Path) -> None:
    probes, healthy = tmp_path / "probes", tmp_path / "healthy"
    probe = f"echo x >> {probes}; test -f {healthy} || {{ echo 'no pulse'; exit 1; }}"
    b = build(hooks(tmp_path, stop=f"rm -f {healthy}", probe=probe, probe_interval=0.03))
    start(b, 2)

    # Failing before any success (still warming up) is not reported.
    wait_until(lambda: line_count(probes) >= 3, 5, "three probes")
    assert b.events.states() == [S.STARTING, S.RUNNING]

    healthy.touch()
    n = line_count(probes)
    wait_until(lambda: line_count(probes) >= n + 2, 5, "healthy probes")
    healthy.unlink()
    failed = b.events.wait_count(S.UNKNOWN, 1)
    assert (
        failed.detail.startswith("probe failed: exited with code 1") and "no pulse" in failed.detail
    )
    assert b.driver.state is S.UNKNOWN

    n = line_count(probes)
    wait_until(lambda: line_count(probes) >= n + 5, 5, "more failing probes")
    assert b.events.count(S.UNKNOWN) == 1, "a failing probe must not be reported every time"

    healthy.touch()
    recovered = b.events.wait_count(S.RUNNING, 2)
    assert recovered.detail == "probe recovered" and b.driver.state is S.RUNNING

    b.driver.stop("bye")
    n = line_count(probes)
    stays(lambda: line_count(probes) == n, 0.2, "the prober kept probing after stop")
    assert b.events.states()[-2:] == [S.STOPPING, S.STOPPED]


def test_close_stops_the_prober(build: Build, tmp_path: Path) -> None:
    probes = tmp_path / "probes"
    b = build(hooks(tmp_path, probe=f"echo x >> {probes}", probe_interval=0.02))
    start(b, None)
    wait_until(lambda: line_count(probes) >= 2, 5, "probing")
    b.driver.close()
    n = line_count(probes)
    stays(lambda: line_count(probes) == n, 0.2, "probing after close")
    b.driver.start(None)  # closed: ignored
    assert b.events.count(S.STARTING) == 1


def test_fence_cancels_a_slow_start_hook(build: Build, tmp_path: Path) -> None:
    # start() must not hold the caller: a lease can be lost while the start hook still runs.
    pidfile = tmp_path / "start.pid"
    cfg = hooks(tmp_path, start=f"sleep 30 & echo $! > {pidfile}; wait", timeout=30)
    b = build(cfg, stop_grace=0.2)
    t0 = time.monotonic()
    b.driver.start(8)
    assert time.monotonic() - t0 < 1 and b.driver.state is S.STARTING
    child = read_pid(pidfile)
    b.driver.fence("lease lost while starting")
    assert time.monotonic() - t0 < 5
    assert b.driver.state is S.FENCED
    assert not pid_alive(child), "the cancelled start hook's child survived"
    assert b.events.states() == [S.STARTING, S.STOPPING, S.FENCED]


# -- outcomes are facts: a real background process, the truth from the process table ---------


def runbook_driver(build: Build, rb: Runbook, **kwargs: Any) -> Built:
    config = HooksDriverConfig(**rb.hooks(**kwargs))
    return build(config, stop_grace=0.2)


def test_probe_failure_is_unknown_and_recovery_is_running(build: Build, runbook: Runbook) -> None:
    b = runbook_driver(build, runbook, probe_interval=0.05)
    assert start(b, 3) is S.RUNNING and runbook.alive()
    wait_until(lambda: runbook.probes() >= 2, 10, "healthy probes")

    runbook.flag("probe-fails")
    failed = b.events.wait_count(S.UNKNOWN, 1, 10)
    assert failed.detail.startswith("probe failed: exited with code 1")
    assert "probe failed by flag" in failed.detail and failed.token == 3
    assert runbook.alive(), "a failing probe says nothing about the process: it still runs"
    n = runbook.probes()
    wait_until(lambda: runbook.probes() >= n + 3, 10, "the prober keeps probing while unknown")
    assert b.events.count(S.UNKNOWN) == 1, "a failing probe is reported once, not every time"

    runbook.flag("probe-fails", False)
    recovered = b.events.wait_count(S.RUNNING, 2, 10)
    assert recovered.detail == "probe recovered" and b.driver.state is S.RUNNING

    # Failing again, then a stop takes over: no probe event may follow the stop's outcome.
    runbook.flag("probe-fails")
    b.events.wait_count(S.UNKNOWN, 2, 10)
    runbook.flag("probe-fails", False)  # the confirmation probe must see it down, not fail
    b.driver.stop("operator move")
    assert b.events.states()[-2:] == [S.STOPPING, S.STOPPED] and not runbook.alive()
    n = len(b.events.snapshot())
    stays(lambda: len(b.events.snapshot()) == n, 0.3, "a probe event followed the stop")


def test_failed_stop_hook_is_unknown_and_the_copy_still_runs(
    build: Build, runbook: Runbook
) -> None:
    b = runbook_driver(build, runbook)
    start(b, 4)
    runbook.flag("fail-stop")
    b.driver.stop("operator move")
    assert b.events.states()[-2:] == [S.STOPPING, S.UNKNOWN]
    detail = b.events.last(S.UNKNOWN).detail
    assert detail.startswith("stop hook exited with code 1") and "stop failed by flag" in detail
    assert runbook.alive(), "the stop hook failed: the copy runs, and the driver must not deny it"

    b.driver.fence("stop unconfirmed")  # what the caller does next
    assert b.events.states()[-2:] == [S.STOPPING, S.FENCED] and not runbook.alive()


def test_stop_hook_ok_but_probe_still_up_is_unknown(build: Build, runbook: Runbook) -> None:
    b = runbook_driver(build, runbook)
    start(b, 5)
    runbook.flag("noop-stop")  # exits 0 without stopping anything
    b.driver.stop("operator move")
    assert b.driver.state is S.UNKNOWN
    assert b.events.last(S.UNKNOWN).detail == "stop hook ok but the probe still reports it up"
    assert runbook.alive()

    runbook.flag("noop-fence")
    b.driver.fence("unconfirmed")
    assert b.events.last(S.UNKNOWN).detail == "fence hook ok but the probe still reports it up"
    assert b.driver.state is S.UNKNOWN and runbook.alive()

    runbook.flag("noop-fence", False)
    b.driver.fence("again")
    assert b.driver.state is S.FENCED and not runbook.alive()
    assert b.events.last(S.FENCED).detail.endswith("the probe reports it down")


def test_hung_fence_hook_times_out_unknown(build: Build, runbook: Runbook) -> None:
    b = runbook_driver(build, runbook, timeout=0.5)
    start(b, 6)
    runbook.flag("hang-fence")
    t0 = time.monotonic()
    b.driver.fence("lease lost")
    assert time.monotonic() - t0 < 5
    assert b.events.states()[-2:] == [S.STOPPING, S.UNKNOWN]
    assert b.events.last(S.UNKNOWN).detail.startswith("fence hook timed out after 0.5 s")
    assert runbook.alive()


def test_failed_or_hung_start_hook_is_unknown(build: Build, runbook: Runbook) -> None:
    # A start hook that times out may have started the copy halfway: unknown, not stopped.
    runbook.flag("hang-start")
    b = runbook_driver(build, runbook, timeout=0.5)
    assert start(b, 7) is S.UNKNOWN
    assert b.events.last(S.UNKNOWN).detail.startswith("start hook timed out after 0.5 s")
    assert runbook.alive(), "the half-started copy runs"
    hook = read_pid(runbook.dir / "start-hook.pid")
    assert not pid_alive(hook), "the timed-out start hook's group was killed"
    b.driver.fence("start unconfirmed")
    assert b.driver.state is S.FENCED and not runbook.alive()

    runbook.flag("hang-start", False)
    runbook.flag("fail-start")
    assert start(b, 8) is S.UNKNOWN
    assert "exited with code 3: start refused by flag" in b.events.last(S.UNKNOWN).detail


def test_every_stop_and_fence_reports_exactly_once(build: Build, runbook: Runbook) -> None:
    b = runbook_driver(build, runbook, timeout=0.5)

    def outcome(call: Callable[[str], None], *allowed: DriverState) -> DriverState:
        n = len(b.events.snapshot())
        call("why")
        new = b.events.states()[n:]
        assert len(new) == 2 and new[0] is S.STOPPING and new[1] in allowed, new
        return new[1]

    d = b.driver
    # Never started: the hooks run anyway (an earlier incarnation may have started a copy).
    assert outcome(d.stop, S.STOPPED) is S.STOPPED
    assert outcome(d.stop, S.STOPPED) is S.STOPPED
    assert outcome(d.fence, S.FENCED) is S.FENCED
    assert outcome(d.fence, S.FENCED) is S.FENCED
    assert len(runbook.calls("stop")) == 2 and len(runbook.calls("fence")) == 2
    start(b, 1)
    runbook.flag("fail-stop")
    assert outcome(d.stop, S.UNKNOWN) is S.UNKNOWN
    runbook.flag("hang-fence")
    assert outcome(d.fence, S.UNKNOWN) is S.UNKNOWN
    runbook.flag("hang-fence", False)
    d.close()  # a closed driver still answers stop and fence
    assert outcome(d.fence, S.FENCED) is S.FENCED and not runbook.alive()
    assert outcome(d.stop, S.UNKNOWN) is S.UNKNOWN  # fail-stop still set


def test_control_characters_never_crash_the_driver(build: Build, runbook: Runbook) -> None:
    b = runbook_driver(build, runbook)
    start(b, 2)
    b.driver.stop("x\0y")  # a NUL cannot go into an env var: escaped, not a ValueError
    assert b.events.states()[-2:] == [S.STOPPING, S.STOPPED] and not runbook.alive()
    assert runbook.calls("stop")[-1].endswith(r"reason=x\x00y")
    assert b.events.last(S.STOPPING).detail == r"x\x00y"
    b.driver.fence("a\x1b[31mb\nc\udcff")
    assert b.driver.state is S.FENCED
    assert runbook.calls("fence")[-1].endswith(r"reason=a\x1b[31mb\x0ac\udcff")

    # A NUL the driver cannot escape (the config's own env): the hook could not run.
    broken = build(HooksDriverConfig(**runbook.hooks(env={"X": "a\0b"})), workload="w2")
    broken.driver.fence("lease lost")
    assert broken.driver.state is S.UNKNOWN
    assert "could not run" in broken.events.last(S.UNKNOWN).detail
    assert start(broken, 3) is S.UNKNOWN
