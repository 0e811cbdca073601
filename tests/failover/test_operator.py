"""Operator commands on a real mesh: move, drain a site, fence; never two active copies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.meshes import Watcher
from support.processes import pid_alive
from support.waiting import wait_until
from support.workloads import workload

from harmony.actors.messages import CommandResult, DrainSite, FenceWorkload, MoveWorkload
from harmony.mesh import subjects
from harmony.mesh.remote import RemoteRef
from harmony.sim.launch import LocalMesh
from harmony.sim.scenario import SIM_TIMINGS

pytestmark = pytest.mark.mesh


@pytest.fixture
def watch(tmp_path: Path) -> Iterator[Watcher]:
    mesh = LocalMesh(
        tmp_path,
        mesh="op",
        sites=("a", "b", "c"),
        timings=SIM_TIMINGS,
        workloads=[workload("ledger", "absolute-consistency", "a", ["b", "c"], tmp_path)],
    )
    try:
        mesh.start(timeout=60)
        w = Watcher(mesh)
        yield w
        w.close()
    finally:
        mesh.stop()


def ask(watch: Watcher, site: str, path: str, msg: object) -> CommandResult:
    result = RemoteRef(watch.conn, "op", site, path, 5.0, sender=subjects.OPERATOR).ask(msg)  # type: ignore[arg-type]
    assert isinstance(result, CommandResult), result
    return result


def test_move_drain_and_fence_hand_the_workload_over_safely(watch: Watcher) -> None:
    a = watch.wait_runs_on("ledger", {"a"}, 30)["a"]
    bad = ask(watch, "a", "agent/workload/ledger", MoveWorkload(target="zz"))
    assert not bad.ok and "not a site" in bad.detail

    moved = ask(watch, "a", "agent/workload/ledger", MoveWorkload(target="c", reason="test"))
    assert moved.ok, moved.detail
    c = watch.wait_runs_on("ledger", {"c"}, 30)["c"]
    assert not pid_alive(int(a.detail["pid"]))
    assert int(c.detail["token"]) > int(a.detail["token"])

    drained = ask(watch, "c", "agent", DrainSite(reason="maintenance"))
    assert drained.ok and "moving ledger to a" in drained.detail
    a2 = watch.wait_runs_on("ledger", {"a"}, 30)["a"]

    fenced = ask(watch, "a", "agent/workload/ledger", FenceWorkload(reason="operator test"))
    assert fenced.ok
    wait_until(lambda: not pid_alive(int(a2.detail["pid"])), 10, message="fence did not stop it")
    # Fenced by an operator: the workload goes on elsewhere and does not come back here.
    elsewhere = wait_until(
        lambda: (r := set(watch.runners("ledger"))) and len(r) == 1 and "a" not in r and r,
        30,
        message=watch.tail,
    )
    watch.wait_runs_on("ledger", elsewhere, 30)
    intervals = watch.assert_safe()
    assert [i.site for i in intervals] == ["a", "c", "a", *elsewhere]
