"""What an earlier incarnation left: a restarted agent fences it before any election.

The keeper survives its agent and fences at once; when the keeper is killed too, the copy's
processes are left behind in its containment. The next incarnation of the agent must find
them (the cgroup and the environment marker say whose they are) and fence them, journaling
what it found, before it takes part in any election.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.meshes import Watcher
from support.processes import pid_alive
from support.waiting import wait_until
from support.workloads import workload

from harmony.actors.drivers.containment import containment_id, scan_marked
from harmony.actors.journal import JournalEvent
from harmony.sim.launch import LocalMesh
from harmony.sim.scenario import SIM_TIMINGS

pytestmark = pytest.mark.mesh

# A copy whose child ignores its fence deadline and SIGTERM: only a kill of the whole
# containment stops it.
STUBBORN = [
    "sh",
    "-c",
    f"sh -c 'trap \"\" TERM; exec sleep 1000' & exec {sys.executable} -m "
    "harmony.sim.example_workload",
]


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[LocalMesh]:
    m = LocalMesh(
        tmp_path,
        mesh="left",
        sites=("a", "b", "c"),
        timings=SIM_TIMINGS,
        workloads=[workload("ledger", "absolute-consistency", "a", ["b", "c"], tmp_path, STUBBORN)],
    )
    try:
        m.start(timeout=60)
        yield m
    finally:
        m.stop()


def test_a_restarted_agent_fences_what_its_killed_keeper_left_before_any_election(
    mesh: LocalMesh,
) -> None:
    watch = Watcher(mesh)
    try:
        first = watch.wait_runs_on("ledger", {"a"}, 30)["a"]
        cid = containment_id(mesh.configs["a"].data_dir, "a", "ledger")
        wait_until(
            lambda: any(p.cmdline.startswith("sleep") for p in scan_marked(cid).get(cid, [])), 10
        )
        sleeper = next(p.pid for p in scan_marked(cid)[cid] if p.cmdline.startswith("sleep"))
        keeper = int(first.detail["pid"])

        # The agent and its keeper die together (kill -9 of both): nothing fences the copy.
        # (The keeper is stopped first: it would see its agent die and fence at once, and
        # the agent would see its keeper die and fence what the keeper left.)
        watch.record_fault("a", "site-killed", "SIGKILL agent and keeper")
        os.kill(keeper, signal.SIGSTOP)
        mesh.kill("a", signal.SIGKILL)
        os.kill(keeper, signal.SIGKILL)
        assert pid_alive(sleeper), "the leftover must survive for this test to mean anything"

        boot = watch.record_fault("a", "site-restarted", "agent")
        mesh.start(["a"], timeout=60, wait_formed=False)
        wait_until(lambda: not pid_alive(sleeper), 15, message="the leftover was not fenced")

        def after_boot() -> list[JournalEvent]:
            return [e for e in watch.history() if e.site == "a" and e.mono >= boot]

        wait_until(
            lambda: any(e.kind == "driver-fenced" for e in after_boot()),
            10,
            message=lambda: "\n".join(f"{e.kind}: {e.reason}" for e in after_boot()),
        )
        events = after_boot()
        fenced = next(e for e in events if e.kind == "driver-fenced")
        assert str(sleeper) in fenced.reason and "sleep" in fenced.reason, fenced.reason
        # Before any election: no lease request of the new incarnation came earlier.
        acquired = [e for e in events if e.kind == "lease-acquired"]
        assert all(fenced.mono < e.mono for e in acquired)
        assert scan_marked(cid).get(cid, []) == [] or all(
            p.pid != sleeper for p in scan_marked(cid)[cid]
        )
    finally:
        watch.close()
