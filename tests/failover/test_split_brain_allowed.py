"""SplitBrainAllowed on real processes: both sides run through a partition; heal reconciles."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.meshes import Watcher
from support.processes import pid_alive
from support.waiting import wait_until
from support.workloads import workload

from harmony.sim.launch import LocalMesh
from harmony.sim.scenario import SIM_TIMINGS

pytestmark = pytest.mark.mesh


@pytest.fixture
def make_mesh(tmp_path: Path) -> Iterator[object]:
    meshes: list[LocalMesh] = []

    def make(reconcile: str) -> LocalMesh:
        m = LocalMesh(
            tmp_path / reconcile,
            mesh="sb",
            sites=("a", "b", "c"),
            timings=SIM_TIMINGS,
            proxied=True,
            workloads=[
                workload("web", "split-brain-allowed", "a", ["b", "c"], reconcile=reconcile)
            ],
        )
        meshes.append(m)
        m.start(timeout=60)
        return m

    yield make
    for m in meshes:
        m.stop()


@pytest.mark.parametrize(
    ("policy", "winner", "loser"), [("keep-original", "a", "b"), ("keep-replacement", "b", "a")]
)
def test_partition_runs_both_sides_and_heal_keeps_one(
    make_mesh,
    policy: str,
    winner: str,
    loser: str,  # type: ignore[no-untyped-def]
) -> None:
    mesh = make_mesh(policy)
    watch = Watcher(mesh)
    try:
        original = watch.wait_runs_on("web", {"a"}, 30)["a"]
        a_pid = int(original.detail["pid"])

        def copies_seen_by(site: str) -> str:
            snap = watch.snaps().get(site)
            sup = (
                next((x for x in snap.actors if x.path == "agent/workload/web"), None)
                if snap
                else None
            )
            return sup.detail.get("copies", "") if sup else ""

        # b must know a's copy before the cut: after the heal it must learn it again.
        wait_until(lambda: copies_seen_by("b") == "a", 10, message="b never saw a's copy")
        watch.record_fault("a", "partition", "{a} | {b, c}")
        assert mesh.proxy is not None
        mesh.proxy.partition(["a"], ["b", "c"])

        # The majority starts a replacement at once; the cut-off primary keeps its copy.
        replacement = watch.wait_runs_on("web", {"b"}, 15)["b"]
        b_pid = int(replacement.detail["pid"])
        assert pid_alive(a_pid) and pid_alive(b_pid)

        watch.record_fault("a", "heal", "all links")
        mesh.proxy.heal_all()
        watch.wait_runs_on("web", {winner}, 30)
        survivor, stopped = (a_pid, b_pid) if winner == "a" else (b_pid, a_pid)
        wait_until(lambda: not pid_alive(stopped), 10, message="the losing copy still runs")
        assert pid_alive(survivor)

        divergences = [e for e in watch.history() if e.kind == "divergence"]
        assert divergences, "the divergence was not journaled"
        d = divergences[-1]
        assert (d.detail["policy"], d.detail["winner"], d.detail["losers"]) == (
            policy,
            winner,
            loser,
        )
        # After reconciliation, exactly one copy. (A route that flaps right after the heal
        # may cause another round of reconciliation; it must still end with one copy.)
        wait_until(lambda: len(watch.runners("web")) == 1, 20, message=watch.tail)
    finally:
        watch.close()
