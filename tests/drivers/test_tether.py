"""The tether on real processes: a workload fences itself when its deadline is not renewed."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harmony.actors.drivers import DriverState, TetherSpec
from harmony.actors.drivers.base import group_alive
from harmony.actors.drivers.tether import TETHER_FENCED, write_deadline
from harmony.actors.journal import read_journal
from harmony.config import ProcessDriverConfig

from .conftest import Built
from .helpers import pid_alive, read_pid, stays, wait_until

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
    return TetherSpec(tmp_path / "tether" / "w1.deadline", tmp_path / "journal.jsonl", "inc-1")


@pytest.fixture
def renewer(spec: TetherSpec) -> Iterator[Callable[[float], threading.Event]]:
    """`renewer(ahead)` keeps the deadline `ahead` s in the future until the event is set."""
    stops: list[threading.Event] = []

    def start(ahead: float) -> threading.Event:
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(0.05):
                write_deadline(spec.deadline_file, time.monotonic() + ahead)

        write_deadline(spec.deadline_file, time.monotonic() + ahead)
        threading.Thread(target=run, daemon=True).start()
        stops.append(stop)
        return stop

    spec.deadline_file.parent.mkdir(parents=True)
    yield start
    for stop in stops:
        stop.set()


def test_a_tethered_workload_gets_its_token_and_stops_like_an_untethered_one(
    build: Build, spec: TetherSpec, renewer: Callable[[float], threading.Event], tmp_path: Path
) -> None:
    renewer(30)
    token_file = tmp_path / "token"
    b = build(stubborn(tmp_path / "w.pid", token_file), tether=spec, stop_grace=0.3)
    b.driver.start(12)
    group = b.driver.pid
    assert group is not None
    worker = read_pid(tmp_path / "w.pid")
    assert os.getpgid(worker) == group, "the workload is not in the driver's group"
    assert "tethered" in b.events.last(S.RUNNING).detail
    wait_until(lambda: token_file.exists() and token_file.read_text().strip(), 5, "token")
    assert token_file.read_text().strip() == "12"
    b.driver.fence("lease lost")  # the agent's own fence still reaches the whole group
    assert b.driver.state is S.FENCED
    assert not pid_alive(worker) and not group_alive(group)
    assert "SIGKILL" in b.events.last(S.FENCED).detail


def test_the_tether_fences_at_the_deadline_when_the_agent_does_not(
    build: Build, spec: TetherSpec, renewer: Callable[[float], threading.Event], tmp_path: Path
) -> None:
    stop_renewing = renewer(0.8)
    b = build(stubborn(tmp_path / "w.pid"), tether=spec, stop_grace=0.3)
    b.driver.start(7)
    group = b.driver.pid
    assert group is not None
    worker = read_pid(tmp_path / "w.pid")
    # While renewals come, it runs past many deadlines.
    stays(lambda: pid_alive(worker), 2.0, "fenced although the deadline kept moving")

    stop_renewing.set()  # the agent froze: nobody renews, nobody fences
    stopped_at = time.monotonic()
    b.events.wait_count(S.FENCED, 1, timeout=5)
    took = time.monotonic() - stopped_at
    assert not pid_alive(worker) and not group_alive(group)
    # deadline (<= 0.8 s after the last write) + grace (0.3 s) + polling and SIGKILL slack.
    assert took <= 0.8 + 0.3 + 1.0, took
    fenced = b.events.last(S.FENCED)
    assert fenced.exit_code == TETHER_FENCED and "fenced by its tether" in fenced.detail
    # A fence is not a crash: restart="always" does not bring it back.
    stays(lambda: b.events.count(S.STARTING) == 1, 0.5, "restarted after a tether fence")
    assert b.driver.state is S.FENCED

    [event] = [e for e in read_journal(spec.journal) if e.kind == "tether-fenced"]  # type: ignore[arg-type]
    assert (event.site, event.workload, event.token, event.incarnation) == (
        "site-a",
        "w1",
        7,
        "inc-1",
    )
    assert "SIGKILL" in event.reason
    assert event.mono >= fenced.mono - 1.0  # written when the group was gone, not before


def test_no_deadline_or_a_past_one_never_starts_the_command(
    build: Build, spec: TetherSpec, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    config = ProcessDriverConfig(command=["/bin/sh", "-c", f"touch {marker}; sleep 60"])
    b = build(config, tether=spec)
    b.driver.start(3)  # no deadline file at all
    assert b.events.wait_count(S.FENCED, 1).exit_code == TETHER_FENCED
    spec.deadline_file.parent.mkdir(parents=True)
    write_deadline(spec.deadline_file, time.monotonic() - 1)
    b.driver.start(4)
    assert b.events.wait_count(S.FENCED, 2).exit_code == TETHER_FENCED
    assert not marker.exists()
    assert "not starting" in "\n".join(b.driver.output_tail())


def test_a_start_without_a_token_is_not_tethered(build: Build, spec: TetherSpec) -> None:
    b = build(ProcessDriverConfig(command=["sleep", "60"]), tether=spec)
    b.driver.start(None)
    pid = b.driver.pid
    assert pid is not None
    assert b"tether" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    b.driver.stop("done")
    assert b.events.last(S.STOPPED).exit_code == -signal.SIGTERM
