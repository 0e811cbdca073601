"""Containment on real processes: every descendant of a copy is found and killed, also what
an earlier incarnation left; what survives SIGKILL is reported, never taken for stopped."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from support.drivers import Agent, Built, assert_empty, cgroup_gone, daemon_cmd, marked, members
from support.processes import pid_alive, read_pid
from support.waiting import stays, wait_until

from harmony.actors.drivers import DriverState, ProcessDriver
from harmony.actors.drivers import process as process_module
from harmony.actors.drivers.cgroup import Cgroup, cgroup_name
from harmony.actors.drivers.containment import (
    CONTAINMENT_ENV,
    Containment,
    KillResult,
    ProcInfo,
    containment_id,
)
from harmony.config import ProcessDriverConfig

S = DriverState
Build = Callable[..., Built]
PY = sys.executable
HAS_CGROUP = Containment("harmony-test-probe").cgroup is not None
needs_cgroup = pytest.mark.skipif(not HAS_CGROUP, reason="no writable cgroup v2 here")
FREEZER_V1 = Path("/sys/fs/cgroup/freezer")


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """`spawn(argv, cid=None)`: a process (marked with `cid`), killed and reaped at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], cid: str | None = None) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if k != CONTAINMENT_ENV}
        if cid is not None:
            env[CONTAINMENT_ENV] = cid
        proc = subprocess.Popen(argv, env=env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def cid_for(tmp_path: Path, workload: str = "w1") -> str:
    return containment_id(tmp_path, "site-a", workload)


# -- Containment itself ----------------------------------------------------------------------


def test_marker_members_are_found_killed_and_confirmed(
    tmp_path: Path, spawn: Callable[..., subprocess.Popen[bytes]], boxes: Callable[[str], str]
) -> None:
    cid = boxes(cid_for(tmp_path))
    other = boxes(cid_for(tmp_path, "w10"))  # a prefix of nothing, a different copy
    a, b = spawn(["sleep", "300"], cid), spawn(["sleep", "300"], cid)
    stranger = spawn(["sleep", "300"], other)
    box = Containment(cid, None)
    assert box.mechanism == "env marker + subreaper"
    assert [p.pid for p in box.members()] == sorted([a.pid, b.pid])
    assert [p.pid for p in box.signal(9, exclude=[b.pid])] == [a.pid]
    a.wait()
    assert [p.pid for p in box.members()] == [b.pid]  # a is a zombie of ours: not a member
    result = box.kill()
    assert result.confirmed and [p.pid for p in result.found] == [b.pid]
    assert "sleep 300" in result.found[0].cmdline
    assert box.members() == [] and box.wait_empty(0)
    assert pid_alive(stranger.pid), "killed a process of another containment"


def test_the_subreaper_tree_holds_descendants_without_the_marker(
    tmp_path: Path, spawn: Callable[..., subprocess.Popen[bytes]], boxes: Callable[[str], str]
) -> None:
    cid = boxes(cid_for(tmp_path))
    pidfile = tmp_path / "hidden.pid"
    script = f"{daemon_cmd(pidfile, clear_env=True, double=False)} wait"
    parent = spawn(["/bin/sh", "-c", script], cid)
    hidden = read_pid(pidfile)
    assert hidden not in marked(cid)
    assert [p.pid for p in Containment(cid, None).members()] == [parent.pid]
    box = Containment(cid, None, tree_root=parent.pid)
    assert {p.pid for p in box.members()} == {parent.pid, hidden}
    assert box.kill().confirmed
    assert not pid_alive(hidden)


@needs_cgroup
def test_the_cgroup_holds_processes_without_the_marker(
    tmp_path: Path, spawn: Callable[..., subprocess.Popen[bytes]], boxes: Callable[[str], str]
) -> None:
    cid = boxes(cid_for(tmp_path))
    box = Containment(cid)
    assert box.cgroup is not None and box.cgroup.path.name == cgroup_name(cid)
    assert box.mechanism == f"cgroup v2 {box.cgroup.path}"
    box.prepare()
    hidden = spawn(["sleep", "300"])  # no marker at all
    box.cgroup.enter(hidden.pid)
    assert [p.pid for p in box.members()] == [hidden.pid]
    assert [p.pid for p in Containment(cid).members()] == [hidden.pid]  # found afresh
    result = box.kill()
    assert result.confirmed and [p.pid for p in result.found] == [hidden.pid]
    hidden.wait()
    box.remove()
    assert not box.cgroup.path.exists()


@needs_cgroup
def test_without_cgroup_kill_the_cgroup_is_frozen_and_killed(
    tmp_path: Path,
    spawn: Callable[..., subprocess.Popen[bytes]],
    boxes: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Linux 5.2 to 5.13: no ``cgroup.kill``; freeze (no fork), SIGKILL, thaw."""
    monkeypatch.setattr(Cgroup, "kill", lambda self: False)
    cid = boxes(cid_for(tmp_path))
    box = Containment(cid)
    box.prepare()
    assert box.cgroup is not None
    hidden = spawn(["sleep", "300"])
    box.cgroup.enter(hidden.pid)
    assert box.kill().confirmed
    assert hidden.wait() == -9


def test_no_cgroup_falls_back_to_the_marker_without_an_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, boxes: Callable[[str], str]
) -> None:
    cid = boxes(cid_for(tmp_path))
    box = Containment(cid, Cgroup(tmp_path / "not-a-cgroup-parent" / "x"))
    assert box.enter() is False
    assert box.cgroup is None and box.mechanism.startswith("env marker + subreaper (cannot")
    box.remove()
    monkeypatch.setattr("harmony.actors.drivers.cgroup.own_cgroup", lambda pid="self": None)
    none = Containment(cid)
    assert none.cgroup is None
    assert none.mechanism == "env marker + subreaper (no cgroup v2 on this host)"
    assert none.kill().confirmed  # nothing to kill, and no cgroup to ask


# -- process trees under the driver -----------------------------------------------------------


def forest(tmp_path: Path, hidden: bool = True) -> tuple[list[str], list[Path]]:
    """`sh -c "worker & wait"` with a `setsid` daemon, a double-forked daemon and (`hidden`)
    a double-forked daemon without the marker; every one ignores SIGTERM."""
    names = ("worker", "setsid", "double", "hidden")[: 4 if hidden else 3]
    files = [tmp_path / f"{n}.pid" for n in names]
    worker = (
        "import os, signal, time, pathlib\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"pathlib.Path({str(files[0])!r}).write_text(str(os.getpid()))\ntime.sleep(300)\n"
    )
    script = (
        f"{daemon_cmd(files[1], double=False)} {daemon_cmd(files[2])}; "
        + (f"{daemon_cmd(files[3], clear_env=True)}; " if hidden else "")
        + f"{shlex.quote(PY)} -c {shlex.quote(worker)} & wait"
    )
    return ["/bin/sh", "-c", script], files


@pytest.mark.parametrize("how", ["stop", "fence"])
@pytest.mark.parametrize("mechanism", ["cgroup", "marker"])
def test_stop_and_fence_leave_no_process_of_the_copy(
    build: Build, reap: Callable[[int], int], tmp_path: Path, how: str, mechanism: str
) -> None:
    """Under both mechanisms: the marker-less daemon is caught by the cgroup or, without
    one, by the keeper's subreaper tree."""
    if mechanism == "cgroup" and not HAS_CGROUP:
        pytest.skip("no writable cgroup v2 here")
    command, files = forest(tmp_path)
    b = build(ProcessDriverConfig(command=command, restart="always"), stop_grace=0.3)
    assert isinstance(b.driver, ProcessDriver)
    if mechanism == "marker":  # as on a host without a writable cgroup v2
        b.driver._box = Containment(b.driver.containment, None)
    b.driver.start(3)
    expected = "cgroup v2" if mechanism == "cgroup" else "env marker + subreaper"
    assert expected in b.events.last(S.RUNNING).detail
    pids = [reap(read_pid(f, timeout=20)) for f in files]
    assert all(pid_alive(p) for p in pids)
    getattr(b.driver, how)("test")
    final = S.STOPPED if how == "stop" else S.FENCED
    assert b.events.states()[-2:] == [S.STOPPING, final]
    assert "SIGKILL" in b.events.last(final).detail
    assert not [p for p in pids if pid_alive(p)], "a process of the copy survived"
    assert_empty(b.driver.containment)
    assert cgroup_gone(b.driver.containment)


# -- what an earlier incarnation left ---------------------------------------------------------


def orphan_copy(
    agent: Callable[..., Agent], reap: Callable[[int], int], tmp_path: Path, cgroup: bool
) -> tuple[str, list[int]]:
    """An agent runs a copy; agent and keeper are SIGKILLed together; the rest stays.
    (Without a cgroup an unmarked orphan of a dead keeper goes to init, out of reach: the
    forest has none then.)"""
    cid = cid_for(tmp_path)
    command, files = forest(tmp_path, hidden=cgroup)
    a = agent(cid, command, token=9, cgroup=cgroup)
    pids = [reap(read_pid(f, timeout=20)) for f in files]
    os.kill(a.proc.pid, 19)  # SIGSTOP: the agent must not clean up after its keeper
    os.kill(a.keeper, 9)
    wait_until(lambda: not pid_alive(a.keeper), 5, "keeper killed")
    a.proc.kill()
    a.proc.wait()
    stays(lambda: all(pid_alive(p) for p in pids), 0.5, "the leftovers went by themselves")
    return cid, pids


@pytest.mark.parametrize("mechanism", ["cgroup", "marker"])
def test_a_new_driver_fences_what_an_earlier_incarnation_left(
    build: Build,
    agent: Callable[..., Agent],
    reap: Callable[[int], int],
    tmp_path: Path,
    mechanism: str,
) -> None:
    if mechanism == "cgroup" and not HAS_CGROUP:
        pytest.skip("no writable cgroup v2 here")
    cid, pids = orphan_copy(agent, reap, tmp_path, mechanism == "cgroup")
    b = build(ProcessDriverConfig(command=["sleep", "60"]), containment=cid)
    assert isinstance(b.driver, ProcessDriver)
    if mechanism == "marker":
        b.driver._box = Containment(cid, None)
    assert b.driver.pid is None  # a fresh driver: no handle on anything
    b.driver.fence("boot: fence what an earlier incarnation left")
    assert b.events.states() == [S.STOPPING, S.FENCED]
    detail = b.events.last(S.FENCED).detail
    assert f"found {len(pids) + 1} processes of {cid}" in detail, detail  # and the shell
    assert all(f"pid {p} " in detail for p in pids), detail
    assert not [p for p in pids if pid_alive(p)]
    assert_empty(cid)


@needs_cgroup
def test_start_on_a_dirty_containment_cleans_it_first(
    build: Build, agent: Callable[..., Agent], reap: Callable[[int], int], tmp_path: Path
) -> None:
    cid, pids = orphan_copy(agent, reap, tmp_path, cgroup=True)
    b = build(ProcessDriverConfig(command=["sleep", "60"]), containment=cid)
    b.driver.start(10)
    running = b.events.last(S.RUNNING)
    assert f"first killed {len(pids) + 1} leftover processes of {cid}" in running.detail
    assert not [p for p in pids if pid_alive(p)]
    assert set(members(cid)) >= {running.pid}  # only the new copy
    b.driver.stop("done")
    assert_empty(cid)


# -- what cannot be killed is reported, never taken for stopped -------------------------------


@contextlib.contextmanager
def frozen_v1(pid: int) -> Iterator[None]:
    """Freeze `pid` in a cgroup v1 freezer: such a task does not die of SIGKILL (not even of
    ``cgroup.kill``) until it is thawed -- an honest unkillable member."""
    d = FREEZER_V1 / f"harmony-test-{os.getpid()}-{pid}"
    d.mkdir()
    try:
        (d / "tasks").write_text(str(pid))
        (d / "freezer.state").write_text("FROZEN")
        wait_until(lambda: (d / "freezer.state").read_text().strip() == "FROZEN", 5, "frozen")
        yield
    finally:
        (d / "freezer.state").write_text("THAWED")
        with contextlib.suppress(OSError):
            (FREEZER_V1 / "tasks").write_text(str(pid))
        wait_until(lambda: not (d / "tasks").read_text().split(), 5, "freezer cgroup empty")
        d.rmdir()


@pytest.mark.skipif(
    not os.access(FREEZER_V1 / "tasks", os.W_OK), reason="needs a writable cgroup v1 freezer"
)
def test_a_member_that_survives_sigkill_is_unknown_until_it_is_gone(
    build: Build, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process_module, "KILL_WAIT", 1.0)
    pidfile = tmp_path / "stuck.pid"
    script = f"sleep 300 & echo $! > {pidfile}; wait"
    b = build(ProcessDriverConfig(command=["/bin/sh", "-c", script]), stop_grace=0.2)
    b.driver.start(4)
    stuck = read_pid(pidfile)
    wait_until(lambda: psutil.Process(stuck).cmdline() == ["sleep", "300"], 5, "sleep exec'd")
    with frozen_v1(stuck):
        b.driver.stop("move")
        assert b.events.states()[-2:] == [S.STOPPING, S.UNKNOWN]
        unknown = b.events.last(S.UNKNOWN)
        assert "1 processes of" in unknown.detail and "survived SIGKILL" in unknown.detail
        assert f"pid {stuck} (sleep 300)" in unknown.detail
        assert b.driver.state is S.UNKNOWN
        b.driver.start(5)  # never a second copy next to one that may still run
        assert b.events.states()[-2:] == [S.STARTING, S.UNKNOWN]
        assert "not started" in b.events.last(S.UNKNOWN).detail
        b.driver.fence("retry")
        assert b.events.states()[-1] is S.UNKNOWN
    # Thawed: the pending SIGKILL lands; the next fence confirms.
    b.driver.fence("retry")
    assert b.events.states()[-1] is S.FENCED
    assert not pid_alive(stuck)
    assert_empty(b.driver.containment)


def test_an_exit_with_unkillable_remnants_is_unknown_and_not_restarted(
    build: Build, tmp_path: Path
) -> None:
    """The decision alone (the real unkillable case is the test above): the waiter's kill
    reports a survivor."""
    b = build(ProcessDriverConfig(command=["sh", "-c", "exit 3"], restart="always"))
    assert isinstance(b.driver, ProcessDriver)
    ghost = ProcInfo(999999, 1, "D", "ghost")
    b.driver.box.kill = lambda *a, **k: KillResult([ghost], [ghost])  # type: ignore[method-assign]
    b.driver.start(1)
    unknown = b.events.wait_count(S.UNKNOWN, 1, timeout=10)
    assert "exited with code 3 but 1 processes" in unknown.detail
    assert "pid 999999 (ghost)" in unknown.detail
    stays(lambda: b.events.count(S.STARTING) == 1, 0.5, "restarted with remnants left")


def test_every_stop_and_fence_reports_exactly_once(build: Build, tmp_path: Path) -> None:
    b = build(ProcessDriverConfig(command=["sh", "-c", "exit 0"], restart="never"))
    calls = [("stop", S.STOPPED), ("fence", S.FENCED), ("stop", S.STOPPED)]
    for name, final in calls:  # idle
        before = len(b.events.snapshot())
        getattr(b.driver, name)("idle")
        assert b.events.states()[before:] == [final]
    b.driver.start(None)
    b.events.wait_count(S.EXITED, 1)
    before = len(b.events.snapshot())
    b.driver.fence("after an exit")
    assert b.events.states()[before:] == [S.FENCED]
    bad = build(ProcessDriverConfig(command=["harmony-no-such-command"]), workload="w2")
    bad.driver.start(2)
    assert bad.events.states() == [S.STARTING, S.UNKNOWN]
    bad.driver.fence("after a spawn error")  # the caller's fence confirms at once
    assert bad.events.states()[-1] is S.FENCED
    assert "nothing of" in bad.events.last(S.FENCED).detail
