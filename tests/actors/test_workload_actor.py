"""WorkloadActor (`agent/workload/<w>/run`) with a real process through the process driver:
start, stop and fence a real copy, and every fact goes to the parent as a `DriverReport`."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pykka
import pytest
from support.actors import Kit, make_kit
from support.processes import pid_alive
from support.waiting import wait_until

from harmony.actors.drivers import DriverEvent, DriverState
from harmony.actors.messages import FenceWorkload, GetOutput, Output, StartWorkload, StopWorkload
from harmony.actors.workload import DriverReport, WorkloadActor
from harmony.config import FailoverTopologyConfig, ProcessDriverConfig, WorkloadConfig

PATH = "agent/workload/w/run"
SERVE = "import os, time; print('up', os.environ.get('HARMONY_FENCING_TOKEN'), flush=True); "
SERVE += "time.sleep(600)"


class Parent(pykka.ThreadingActor):
    """Stands in for the WorkloadSupervisor: keeps what the run actor reports."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[DriverEvent] = []

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, DriverReport):
            self.events.append(message.event)
            return None
        return list(self.events)


def workload(code: str, restart: str = "never") -> WorkloadConfig:
    return WorkloadConfig(
        name="w",
        driver=ProcessDriverConfig(command=[sys.executable, "-c", code], restart=restart),  # type: ignore[arg-type]
        topology=FailoverTopologyConfig(primary="a", standbys=["b"]),
        strategy="split-brain-allowed",  # no lease: no tether (the supervisor's business)
    )


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    k = make_kit()
    k.ctx.config = msgspec.structs.replace(k.ctx.config, data_dir=str(tmp_path / "data"))
    try:
        yield k
    finally:
        pykka.ActorRegistry.stop_all()  # the run actor's driver stops what it started
        k.ctx.scheduler.stop()


def events(parent: pykka.ActorRef[Any]) -> list[DriverEvent]:
    return list(parent.ask("read", timeout=5))


def reported(parent: pykka.ActorRef[Any], state: DriverState, timeout: float = 15) -> DriverEvent:
    """The latest report of `state`, once there is one."""
    return wait_until(
        lambda: next((e for e in reversed(events(parent)) if e.state is state), None),
        timeout,
        message=lambda: f"no {state} report; got {[e.state for e in events(parent)]}",
    )


def start(kit: Kit, code: str = SERVE, restart: str = "never") -> tuple[Any, Any]:
    parent = Parent.start()
    run = WorkloadActor.start(kit.ctx, PATH, parent, workload(code, restart))
    return parent, run


def test_start_runs_a_real_process_with_its_token_and_reports_it(kit: Kit) -> None:
    parent, run = start(kit)
    run.tell(StartWorkload(token=7, reason="test"))
    running = reported(parent, DriverState.RUNNING)
    assert running.token == 7 and running.pid is not None and pid_alive(running.pid)
    # The copy saw its token in its environment (and its output reaches the operator).
    out = wait_until(lambda: (o := run.ask(GetOutput(lines=5))) and "up 7" in o.lines and o, 10)
    assert isinstance(out, Output)
    line = wait_until(lambda: (i := kit.ctx.board.get(PATH)) and i.state == "running" and i, 5)
    assert line.detail["pid"] == str(running.pid) and line.detail["token"] == "7"


def test_stop_ends_the_process_and_reports_stopped(kit: Kit) -> None:
    parent, run = start(kit)
    run.tell(StartWorkload(token=None, reason="test"))
    pid = reported(parent, DriverState.RUNNING).pid
    assert pid is not None
    run.tell(StopWorkload(reason="enough"))
    reported(parent, DriverState.STOPPED)
    assert not pid_alive(pid)
    wait_until(lambda: (i := kit.ctx.board.get(PATH)) and i.state == "stopped", 5)


def test_fence_ends_the_process_and_reports_fenced(kit: Kit) -> None:
    parent, run = start(kit)
    run.tell(StartWorkload(token=3, reason="test"))
    pid = reported(parent, DriverState.RUNNING).pid
    assert pid is not None
    run.tell(FenceWorkload(reason="lease lost"))
    fenced = reported(parent, DriverState.FENCED)
    assert not pid_alive(pid)
    assert [e.state for e in events(parent)].index(DriverState.FENCED) > 0
    assert fenced.workload == "w"


def test_an_exit_is_reported_with_its_code(kit: Kit) -> None:
    parent, run = start(kit, code="raise SystemExit(3)")
    run.tell(StartWorkload(token=None, reason="test"))
    exited = reported(parent, DriverState.EXITED)
    assert exited.exit_code == 3 and not exited.restarting


def test_stopping_the_actor_stops_its_copy(kit: Kit) -> None:
    parent, run = start(kit)
    run.tell(StartWorkload(token=None, reason="test"))
    pid = reported(parent, DriverState.RUNNING).pid
    assert pid is not None
    run.stop(block=True, timeout=30)
    wait_until(lambda: not pid_alive(pid), 10, message="the copy outlived its run actor")
