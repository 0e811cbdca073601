"""AbsoluteConsistency on real processes: crash, partition, witness; never two active copies."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.meshes import Watcher
from support.processes import pid_alive
from support.waiting import wait_until
from support.workloads import workload

from harmony.actors.drivers.containment import Containment, containment_id
from harmony.sim.launch import LocalMesh
from harmony.sim.scenario import SIM_TIMINGS
from harmony.strategies.timing import worst_case_takeover

pytestmark = pytest.mark.mesh

# A standby may act only after the lease expired, or after the JetStream leader that died
# with the primary was replaced (4-9 s measured), then it starts the process.
ELECTION = 9.0
BOUND = (
    worst_case_takeover(SIM_TIMINGS.lease_ttl, election_time=ELECTION)
    + 2 * SIM_TIMINGS.heartbeat_interval
    + 3.0
)


@pytest.fixture
def mesh(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LocalMesh]:
    sites, witnesses = request.param if hasattr(request, "param") else (("a", "b", "c"), ())
    m = LocalMesh(
        tmp_path,
        mesh="ac",
        sites=sites,
        witnesses=witnesses,
        timings=SIM_TIMINGS,
        proxied=True,
        workloads=[workload("ledger", "absolute-consistency", sites[0], list(sites[1:]), tmp_path)],
    )
    try:
        m.start(timeout=60)
        yield m
    finally:
        m.stop()


@pytest.fixture
def watch(mesh: LocalMesh) -> Iterator[Watcher]:
    w = Watcher(mesh)
    yield w
    w.close()


def test_primary_site_crash_fails_over_to_the_standby(mesh: LocalMesh, watch: Watcher) -> None:
    first = watch.wait_runs_on("ledger", {"a"}, 30)["a"]
    old_pid, old_token = int(first.detail["pid"]), int(first.detail["token"])
    killed_at = watch.record_fault("a", "site-killed", "SIGKILL agent and nats-server")
    mesh.kill("a", signal.SIGKILL)
    # Its keeper outlives the agent and fences the copy at once.
    wait_until(lambda: not pid_alive(old_pid), 5, message="workload outlived its agent")

    new = watch.wait_runs_on("ledger", {"b"}, BOUND + 10)["b"]
    took = time.monotonic() - killed_at
    assert took <= BOUND, f"failover took {took:.1f} s, bound {BOUND:.1f} s"
    assert int(new.detail["token"]) > old_token
    intervals = watch.assert_safe()
    assert [i.site for i in intervals] == ["a", "b"]
    assert intervals[0].end is not None and intervals[0].end < intervals[1].start


def test_cut_off_primary_fences_before_the_majority_starts(mesh: LocalMesh, watch: Watcher) -> None:
    first = watch.wait_runs_on("ledger", {"a"}, 30)["a"]
    old_pid, old_token = int(first.detail["pid"]), int(first.detail["token"])
    cut_at = watch.record_fault("a", "partition", "{a} | {b, c}")
    assert mesh.proxy is not None
    mesh.proxy.partition(["a"], ["b", "c"])

    new = watch.wait_runs_on("ledger", {"b"}, 40)["b"]
    assert not pid_alive(old_pid)
    assert int(new.detail["token"]) > old_token
    history = watch.history()
    fence = next(e for e in history if e.site == "a" and e.kind == "fence")
    fenced = next(e for e in history if e.site == "a" and e.kind == "driver-fenced")
    start_b = next(e for e in history if e.site == "b" and e.kind == "start")
    # The holder's last renewal was sent before the cut, so its fence deadline came at most
    # lease_ttl - fence_margin after it (plus timer lateness).
    assert fence.mono - cut_at <= SIM_TIMINGS.lease_ttl - SIM_TIMINGS.fence_margin + 0.5
    assert fenced.mono - fence.mono <= SIM_TIMINGS.stop_grace + 0.5
    assert fenced.mono < start_b.mono, "majority started before the minority had fenced"
    assert start_b.token is not None and start_b.token > old_token
    watch.assert_safe()

    # Heal: a rejoins and the mesh keeps one copy. Usually b keeps the lease and a stays
    # down; but a's server comes back with a higher Raft term (it campaigned alone), which
    # can force an election of the lease stream that outlasts b's fence deadline at these
    # short timings, and then a, the primary, may take the lease back. Either is safe.
    watch.record_fault("a", "heal", "all links")
    mesh.proxy.heal_all()
    wait_until(
        lambda: (
            all(p.state == "alive" for s in watch.snaps().values() for p in s.peers)
            and len(watch.snaps()) == 3
        ),
        30,
        message=watch.tail,
    )
    # One bound for the heal's own election (which can cost b its lease, as said above),
    # then one for the takeover that follows it.
    wait_until(lambda: len(watch.runners("ledger")) == 1, 2 * BOUND, message=lambda: watch.tail())
    watch.assert_safe()


def test_paused_primary_agent_cannot_keep_its_workload_running(
    mesh: LocalMesh, watch: Watcher
) -> None:
    """SIGSTOP the primary's agent (a long GC pause, a frozen VM): it can neither renew nor
    fence. Its workload's tether stops the workload at the fence deadline anyway, before the
    lease can expire, so the standby starts a second copy only after the first is gone."""
    first = watch.wait_runs_on("ledger", {"a"}, 30)["a"]
    old_token = int(first.detail["token"])
    copy = Containment(containment_id(mesh.configs["a"].data_dir, "a", "ledger"))
    # The driver reports running once the keeper runs; the keeper then starts the workload.
    wait_until(
        lambda: len(copy.members()) >= 2,
        10,
        message="expected the keeper and the workload in the copy's containment",
    )
    agent = mesh.procs["a"].proc
    assert agent is not None
    paused_at = watch.record_fault("a", "paused", "SIGSTOP agent")
    os.killpg(agent.pid, signal.SIGSTOP)
    try:
        wait_until(
            copy.empty,
            SIM_TIMINGS.lease_ttl,
            message="the workload of a paused agent kept running",
        )
        stopped_in = time.monotonic() - paused_at
        # The last renewal was sent before the pause: deadline + grace + poll lateness.
        assert (
            stopped_in
            <= SIM_TIMINGS.lease_ttl - SIM_TIMINGS.fence_margin + SIM_TIMINGS.stop_grace + 0.5
        )
        new = watch.wait_runs_on("ledger", {"b"}, BOUND + 10)["b"]
        assert int(new.detail["token"]) > old_token
        history = watch.history()
        tethered = next(e for e in history if e.site == "a" and e.kind == "tether-fenced")
        start_b = next(e for e in history if e.site == "b" and e.kind == "start")
        assert tethered.mono < start_b.mono, "the standby started before a's copy was fenced"
        assert tethered.token == old_token
        intervals = watch.assert_safe()
        assert [i.site for i in intervals][:2] == ["a", "b"]
    finally:
        os.killpg(agent.pid, signal.SIGCONT)

    # a wakes up to a lost lease and a fenced copy: it stays down, b keeps running.
    wait_until(
        lambda: (r := watch.run_actor("a", "ledger")) is not None and r.state == "fenced",
        30,
        message=watch.tail,
    )
    watch.wait_runs_on("ledger", {"b"}, 10)
    watch.assert_safe()


@pytest.mark.parametrize("mesh", [(("a", "b"), ("w",))], indirect=True)
def test_two_sites_and_a_witness_survive_the_loss_of_either(
    mesh: LocalMesh, watch: Watcher
) -> None:
    snaps = watch.snaps()
    assert snaps["w"].witness and not any("workload" in a.path for a in snaps["w"].actors)
    watch.wait_runs_on("ledger", {"a"}, 30)
    watch.record_fault("a", "site-killed", "SIGKILL")
    mesh.kill("a", signal.SIGKILL)
    watch.wait_runs_on("ledger", {"b"}, BOUND + 10)

    mesh.start(["a"], timeout=60)  # a comes back as a standby: b keeps the lease
    wait_until(lambda: len(watch.snaps()) == 3, 30, message=watch.tail)
    watch.wait_runs_on("ledger", {"b"}, 10)

    watch.record_fault("b", "site-killed", "SIGKILL")
    mesh.kill("b", signal.SIGKILL)
    watch.wait_runs_on("ledger", {"a"}, BOUND + 10)
    intervals = watch.assert_safe()
    assert [i.site for i in intervals] == ["a", "b", "a"]


def test_graceful_stop_releases_the_lease_for_the_standby(mesh: LocalMesh, watch: Watcher) -> None:
    """SIGTERM to the primary's agent: it stops its copy, releases the lease, then exits 0;
    the standby takes over on the release, not on the TTL."""
    watch.wait_runs_on("ledger", {"a"}, 30)
    stopped_at = watch.record_fault("a", "agent-sigterm", "graceful stop")
    mesh.kill("a", signal.SIGTERM, with_server=False)
    assert mesh.procs["a"].proc is not None and mesh.procs["a"].proc.returncode == 0
    watch.wait_runs_on("ledger", {"b"}, 30)
    history = watch.history()
    released = next(e for e in history if e.site == "a" and e.kind == "lease-released")
    stopped = next(e for e in history if e.site == "a" and e.kind == "driver-stopped")
    acquired = next(e for e in history if e.site == "b" and e.kind == "lease-acquired")
    assert stopped.mono < released.mono < acquired.mono
    # Taken over on the release: well before the lease could have expired on its own.
    assert acquired.mono - released.mono < SIM_TIMINGS.lease_ttl
    assert released.mono > stopped_at
    watch.assert_safe()
