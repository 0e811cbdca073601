"""WorkloadSupervisor (`agent/workload/<w>`): it carries out its strategy's decisions on its
real children. Split-brain-allowed: the start decision runs a real copy through the run
child, a divergence stops it, an operator stop and a drain take it down. Absolute
consistency on a real nats-server: the lease child takes the lease by CAS and the copy
starts with that token."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest
from support.actors import Kit, journaled, make_kit
from support.nats_servers import Node
from support.processes import pid_alive
from support.waiting import wait_until

from harmony.actors.clock import SystemClock
from harmony.actors.journal import read_journal
from harmony.actors.messages import CommandResult, CopyInfo, StopWorkload
from harmony.actors.peers import PeerChanged, PeerCopies
from harmony.actors.timers import Scheduler
from harmony.actors.workload_supervisor import Drain, WorkloadSupervisor, workload_path
from harmony.config import FailoverTopologyConfig, ProcessDriverConfig, Timings, WorkloadConfig
from harmony.mesh.connection import MeshConnection
from harmony.mesh.leases import LeaseStore

PATH = workload_path("w")
RUN = f"{PATH}/run"
SLEEP = ["sleep", "600"]


def workload(strategy: str, command: list[str] = SLEEP) -> WorkloadConfig:
    return WorkloadConfig(
        name="w",
        driver=ProcessDriverConfig(command=command),
        topology=FailoverTopologyConfig(primary="a", standbys=["b"]),
        strategy=strategy,  # type: ignore[arg-type]
    )


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    """Site a, on real time (the supervisor's ticks must fire), with a journal."""
    k = make_kit(timings=Timings())
    ctx = k.ctx
    ctx.scheduler.stop()
    ctx.clock, ctx.scheduler = SystemClock(), Scheduler(time.monotonic)
    with journaled(k, tmp_path):
        yield k


def kinds(kit: Kit) -> list[str]:
    assert kit.ctx.journal is not None
    return [e.kind for e in read_journal(kit.ctx.journal.path) if e.workload == "w"]


def running_pid(kit: Kit, timeout: float = 15) -> int:
    """The pid of the copy, once the run actor says it runs."""

    def pid() -> int | None:
        line = kit.ctx.board.get(RUN)
        ok = line is not None and line.state == "running" and line.detail.get("pid")
        return int(line.detail["pid"]) if ok and line is not None else None

    return int(wait_until(pid, timeout, message=lambda: f"no copy runs: {kinds(kit)}"))


def start_sba(kit: Kit) -> tuple[Any, int]:
    """A split-brain-allowed supervisor whose strategy has started its copy."""
    sup = WorkloadSupervisor.start(kit.ctx, PATH, None, workload("split-brain-allowed"))
    # The mesh's copies, seen once (what PeerWatch's first heartbeat of b brings): the
    # primary then starts its copy.
    sup.tell(PeerCopies("b", {}))
    pid = running_pid(kit)
    assert pid_alive(pid)
    wait_until(lambda: "w" in kit.ctx.copies.read(), 5, message="the copy is not announced")
    return sup, pid


def test_the_strategys_start_runs_a_real_copy_through_the_run_child(kit: Kit) -> None:
    start_sba(kit)
    wait_until(lambda: {"boot", "start", "driver-running"} <= set(kinds(kit)), 5)
    line = kit.ctx.board.get(PATH)
    assert line is not None and line.detail["role"] == "primary"
    assert line.detail["phase"] == "running"


def test_a_divergence_the_strategy_resolves_against_us_stops_our_copy(kit: Kit) -> None:
    sup, pid = start_sba(kit)
    sup.tell(PeerChanged("b", "unknown", "alive", 0.0))
    # b's copy started long before ours: keep-original keeps b's and stops ours.
    sup.tell(PeerCopies("b", {"w": CopyInfo(started_wall=1.0)}))
    wait_until(lambda: not pid_alive(pid), 15, message=lambda: f"still runs: {kinds(kit)}")
    wait_until(lambda: {"divergence", "stop", "driver-stopped"} <= set(kinds(kit)), 5)
    wait_until(lambda: "w" not in kit.ctx.copies.read(), 5)


def test_an_operator_stop_takes_the_copy_down(kit: Kit) -> None:
    sup, pid = start_sba(kit)
    result = sup.ask(StopWorkload(reason="maintenance"), timeout=10)
    assert isinstance(result, CommandResult) and result.ok
    wait_until(lambda: not pid_alive(pid), 15, message=lambda: f"still runs: {kinds(kit)}")
    wait_until(lambda: "operator-stop" in kinds(kit), 5)


def test_a_drain_stops_the_copy_and_says_when_it_is_done(kit: Kit) -> None:
    sup, pid = start_sba(kit)
    done = sup.ask(Drain(), timeout=10)
    assert done.wait(20), f"drain never finished: {kinds(kit)}"
    assert not pid_alive(pid)
    line = kit.ctx.board.get(PATH)
    assert line is not None and line.state == "done"


# -- absolute consistency on a real nats-server --------------------------------------------


@pytest.fixture
def leases(make_nats_server: Callable[..., Node]) -> Iterator[LeaseStore]:
    node = make_nats_server()
    conn = MeshConnection([node.client_url], "supervisor-test").start()
    try:
        conn.wait_connected(10)
        store = LeaseStore(conn, "m", ttl=Timings().lease_ttl, replicas=1)
        store.ensure_bucket("w")
        yield store
    finally:
        pykka.ActorRegistry.stop_all()
        conn.close()


@pytest.mark.mesh
def test_the_lease_is_taken_by_cas_and_the_copy_starts_with_its_token(
    kit: Kit, leases: LeaseStore, tmp_path: Path
) -> None:
    kit.ctx.leases = leases
    out = tmp_path / "token"
    token = f"open({str(out)!r}, 'w').write(os.environ['HARMONY_FENCING_TOKEN'])"
    command = [sys.executable, "-c", f"import os, time; {token}; time.sleep(600)"]
    WorkloadSupervisor.start(kit.ctx, PATH, None, workload("absolute-consistency", command))
    pid = running_pid(kit, timeout=30)
    entry = leases.read("w")
    assert entry is not None and entry.holder is not None and entry.holder.site == "a"
    line = kit.ctx.board.get(PATH)
    assert line is not None and line.detail["token"] == str(entry.revision)
    wait_until(lambda: out.exists() and out.read_text(), 10, message="the copy wrote no token")
    assert out.read_text() == str(entry.revision)  # the copy got the lease's revision
    assert pid_alive(pid)
    assert {"boot", "start"} <= set(kinds(kit))


def test_a_command_the_supervisor_does_not_know_is_an_error(kit: Kit) -> None:
    sup = WorkloadSupervisor.start(kit.ctx, PATH, None, workload("split-brain-allowed"))
    with pytest.raises(AssertionError, match="unreachable"):
        sup.proxy().execute("no such command").get(timeout=5)
