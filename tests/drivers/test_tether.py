"""The keeper (tether) on real processes: a copy is fenced when its deadline is not renewed,
when its deadline file goes, and when its agent dies -- grandchildren and daemons included."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from support.drivers import Agent, Built, assert_empty, cgroup_gone, daemon_cmd, members
from support.processes import pid_alive, read_pid
from support.waiting import stays, wait_until

from harmony.actors.drivers import DriverState, TetherSpec
from harmony.actors.drivers.base import group_alive
from harmony.actors.drivers.containment import containment_id
from harmony.actors.drivers.tether import TETHER_FENCED, write_deadline
from harmony.actors.journal import JournalEvent, read_journal
from harmony.config import ProcessDriverConfig

S = DriverState
Build = Callable[..., Built]
PY = sys.executable


def stubborn(pidfile: Path, token_file: Path | None = None) -> ProcessDriverConfig:
    """A shell that ignores SIGTERM, with a child that ignores it too: only SIGKILL works."""
    code = (
        "import os, signal, time, pathlib\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"pathlib.Path({str(pidfile)!r}).write_text(str(os.getpid()))\ntime.sleep(60)\n"
    )
    token = ""
    if token_file is not None:
        token = f'echo "$HARMONY_FENCING_TOKEN" > {shlex.quote(str(token_file))}; '
    script = f"trap '' TERM; {token}{shlex.quote(PY)} -c {shlex.quote(code)} & wait"
    return ProcessDriverConfig(command=["/bin/sh", "-c", script], restart="always")


@pytest.fixture
def spec(tmp_path: Path) -> TetherSpec:
    return TetherSpec(tmp_path / "tether" / "w1", tmp_path / "journal.jsonl", "inc-1")


class Renewal:
    """A thread that keeps a deadline file fresh. `set()` stops it and waits until it has:
    a write already under way would otherwise land after the caller's next step (a test
    that unlinks the file saw it written again, and waited for the 30 s deadline)."""

    def __init__(self, path: Path, ahead: float) -> None:
        self.stop = threading.Event()
        self.path, self.ahead = path, ahead
        write_deadline(path, time.monotonic() + ahead)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            write_deadline(self.path, time.monotonic() + self.ahead)

    def set(self) -> None:
        self.stop.set()
        self.thread.join(5)
        assert not self.thread.is_alive()


@pytest.fixture
def renewer(spec: TetherSpec) -> Iterator[Callable[[int, float], Renewal]]:
    """`renewer(token, ahead)` keeps that token's deadline `ahead` s in the future until its
    `set()`."""
    renewals: list[Renewal] = []

    def start(token: int, ahead: float) -> Renewal:
        renewals.append(Renewal(spec.deadline_file(token), ahead))
        return renewals[-1]

    spec.deadline_dir.mkdir(parents=True)
    yield start
    for renewal in renewals:
        renewal.set()


def tether_events(journal: Path) -> list[JournalEvent]:
    return (
        [e for e in read_journal(journal) if e.kind == "tether-fenced"] if journal.exists() else []
    )


def test_a_tethered_workload_gets_its_token_and_stops_like_an_untethered_one(
    build: Build,
    spec: TetherSpec,
    renewer: Callable[[int, float], Renewal],
    tmp_path: Path,
) -> None:
    renewer(12, 30)
    token_file = tmp_path / "token"
    b = build(stubborn(tmp_path / "w.pid", token_file), tether=spec, stop_grace=0.3)
    b.driver.start(12)
    group = b.driver.pid
    assert group is not None
    worker = read_pid(tmp_path / "w.pid")
    assert os.getpgid(worker) == group, "the workload is not in the keeper's group"
    assert os.getpgid(group) != os.getpgrp(), "the keeper is in the agent's process group"
    assert "tethered" in b.events.last(S.RUNNING).detail
    wait_until(lambda: token_file.exists() and token_file.read_text().strip(), 5, "token")
    assert token_file.read_text().strip() == "12"
    b.driver.fence("lease lost")  # the agent's own fence still reaches the whole copy
    assert b.driver.state is S.FENCED
    assert not pid_alive(worker) and not group_alive(group)
    assert "SIGKILL" in b.events.last(S.FENCED).detail
    assert_empty(b.driver.containment)


def test_the_tether_fences_at_the_deadline_when_the_agent_does_not(
    build: Build,
    spec: TetherSpec,
    renewer: Callable[[int, float], Renewal],
    tmp_path: Path,
) -> None:
    stop_renewing = renewer(7, 0.8)
    b = build(stubborn(tmp_path / "w.pid"), tether=spec, stop_grace=0.3)
    b.driver.start(7)
    worker = read_pid(tmp_path / "w.pid")
    # While renewals come, it runs past many deadlines.
    stays(lambda: pid_alive(worker), 2.0, "fenced although the deadline kept moving")

    stop_renewing.set()  # the agent froze: nobody renews, nobody fences
    stopped_at = time.monotonic()
    b.events.wait_count(S.FENCED, 1, timeout=5)
    took = time.monotonic() - stopped_at
    assert not pid_alive(worker)
    assert_empty(b.driver.containment)
    # deadline (<= 0.8 s after the last write) + grace (0.3 s) + polling and SIGKILL slack.
    assert took <= 0.8 + 0.3 + 1.0, took
    fenced = b.events.last(S.FENCED)
    assert fenced.exit_code == TETHER_FENCED and "fenced by its tether" in fenced.detail
    # A fence is not a crash: restart="always" does not bring it back.
    stays(lambda: b.events.count(S.STARTING) == 1, 0.5, "restarted after a tether fence")
    assert b.driver.state is S.FENCED

    [event] = tether_events(spec.journal)
    assert (event.site, event.workload, event.token, event.incarnation) == (
        "site-a",
        "w1",
        7,
        "inc-1",
    )
    assert "no renewal" in event.reason and "SIGKILL" in event.reason
    assert event.mono >= fenced.mono - 1.0


def test_a_removed_deadline_file_fences_at_once(
    build: Build,
    spec: TetherSpec,
    renewer: Callable[[int, float], Renewal],
    tmp_path: Path,
) -> None:
    """A restarted agent deletes the old deadline files (DeadlineHandoff.reset): the old
    copy's keeper must not wait for its last deadline."""
    stop_renewing = renewer(5, 30)
    b = build(stubborn(tmp_path / "w.pid"), tether=spec, stop_grace=0.3)
    b.driver.start(5)
    worker = read_pid(tmp_path / "w.pid")
    stop_renewing.set()
    spec.deadline_file(5).unlink()
    b.events.wait_count(S.FENCED, 1, timeout=5)  # far before the 30 s deadline
    assert not pid_alive(worker)
    assert_empty(b.driver.containment)
    [event] = tether_events(spec.journal)
    assert "removed or released" in event.reason


def test_no_deadline_or_a_past_one_never_starts_the_command(
    build: Build, spec: TetherSpec, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    config = ProcessDriverConfig(command=["/bin/sh", "-c", f"touch {marker}; sleep 60"])
    b = build(config, tether=spec)
    b.driver.start(3)  # no deadline file at all
    assert b.events.wait_count(S.FENCED, 1).exit_code == TETHER_FENCED
    spec.deadline_dir.mkdir(parents=True)
    write_deadline(spec.deadline_file(4), time.monotonic() - 1)
    b.driver.start(4)
    assert b.events.wait_count(S.FENCED, 2).exit_code == TETHER_FENCED
    assert not marker.exists()
    assert "not starting" in "\n".join(b.driver.output_tail())


def test_a_start_without_a_token_runs_under_a_keeper_without_a_deadline(
    build: Build, spec: TetherSpec, tmp_path: Path
) -> None:
    out = tmp_path / "env"
    script = f'echo "deadline=$HARMONY_FENCE_DEADLINE_FILE" > {out}; exec sleep 60'
    b = build(ProcessDriverConfig(command=["/bin/sh", "-c", script]), tether=spec)
    b.driver.start(None)
    pid = b.driver.pid
    assert pid is not None
    argv = psutil.Process(pid).cmdline()
    assert "harmony.actors.drivers.tether_main" in argv and "--deadline-file" not in argv
    wait_until(lambda: out.exists() and out.read_text().strip(), 5, "env written")
    assert out.read_text().strip() == "deadline="
    b.driver.stop("done")
    assert b.events.last(S.STOPPED).exit_code == -signal.SIGTERM


# -- the agent dies ------------------------------------------------------------------------


def tree_command(tmp_path: Path) -> tuple[list[str], list[Path]]:
    """A worker ignoring SIGTERM behind `sh -c "... & wait"`, a setsid daemon and a
    double-forked daemon; the pid files of all three."""
    files = [tmp_path / "worker.pid", tmp_path / "setsid.pid", tmp_path / "double.pid"]
    worker = (
        "import os, signal, time, pathlib\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"pathlib.Path({str(files[0])!r}).write_text(str(os.getpid()))\ntime.sleep(300)\n"
    )
    script = (
        f"setsid sh -c 'echo $$ > {shlex.quote(str(files[1]))}; exec sleep 300' & "
        f"{daemon_cmd(files[2])}; {shlex.quote(PY)} -c {shlex.quote(worker)} & wait"
    )
    return ["/bin/sh", "-c", script], files


@pytest.mark.parametrize("token", [41, None], ids=["tokened", "untokened"])
def test_a_dead_agent_takes_every_process_of_its_copy_with_it(
    agent: Callable[..., Agent], tmp_path: Path, token: int | None
) -> None:
    """The issue's case: SIGKILL of the agent left `sh -c "worker & wait"`'s worker running.
    Now the keeper is not tied to the agent: it sees the agent go and fences everything."""
    cid = containment_id(tmp_path, "site-a", "w1")
    command, files = tree_command(tmp_path)
    a = agent(cid, command, token=token, grace=0.5)
    pids = [read_pid(f, timeout=20) for f in files]
    assert all(pid_alive(p) for p in pids)
    assert set(pids) | {a.keeper} <= set(members(cid))
    killed_at = time.monotonic()
    a.proc.kill()
    wait_until(lambda: not members(cid), 0.5 + 4.0, "the copy of a dead agent ended")
    took = time.monotonic() - killed_at
    assert not any(pid_alive(p) for p in pids), "a process of the copy outlived its agent"
    # (An exiting keeper that released its memory is no member any more; it still has to go.)
    wait_until(lambda: not pid_alive(a.keeper), 5, "keeper exited")
    assert took <= 0.5 + 4.0
    wait_until(lambda: cgroup_gone(cid), 5, "the keeper removed the empty cgroup")
    if token is not None:
        wait_until(lambda: tether_events(a.journal), 5, "tether-fenced journaled")
        [event] = tether_events(a.journal)
        assert event.reason.startswith("agent gone")
        assert (event.token, event.incarnation) == (41, "inc-agent")
        assert "SIGKILL" in event.reason  # the worker ignores SIGTERM
