"""A core-and-edge mesh of real agents: 3 core sites, 2 edges whose servers are leaf nodes.

Secure (TLS + nkeys), every leaf link through the fault proxy so that a test can cut one
edge off the core and nothing else. Safety is judged from ground truth (`Watcher`).
"""

from __future__ import annotations

import json
import stat
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from support.meshes import Watcher
from support.processes import pid_alive
from support.waiting import stays, wait_until

from harmony.actors.messages import ActorInfo
from harmony.mesh.leases import LeaseStore
from harmony.sim.launch import LocalMesh
from harmony.sim.scenario import SIM_TIMINGS

pytestmark = pytest.mark.mesh

CORES = ("a", "b", "c")  # as tests/edge/conftest.py starts them
EDGES = ("e1", "e2")


def monitor(mesh: LocalMesh, site: str, path: str) -> Any:
    port = mesh.configs[site].nats.http_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=5) as r:
        return json.load(r)


def jetstream_of(mesh: LocalMesh, site: str) -> Any:
    return monitor(mesh, site, "varz").get("jetstream", {})


def running_edge(watch: Watcher) -> tuple[str, ActorInfo]:
    """The edge that runs the ledger, once exactly one site runs it and its copy acted.
    Usually the primary e1; e2 when it booted first (both are edges: either will do)."""
    return watch.wait_one_runner("ledger", EDGES, 30)


def lease_token(mesh: LocalMesh) -> int | None:
    """The ledger lease's revision as the core's bucket has it (read as the operator)."""
    conn = mesh.connect("test-lease-read")
    try:
        conn.wait_connected(10)
        store = LeaseStore(conn, mesh.mesh, ttl=SIM_TIMINGS.lease_ttl, replicas=3)
        entry = store.read("ledger")
        return entry.revision if entry is not None and entry.holder is not None else None
    finally:
        conn.close()


def test_edges_are_leaf_nodes_and_an_edge_primary_runs_with_the_cores_token(
    mesh: LocalMesh, watch: Watcher
) -> None:
    for e in EDGES:
        assert mesh.configs[e].nats.role == "edge"
        varz = monitor(mesh, e, "varz")
        assert not varz.get("jetstream", {}).get("config"), f"{e} runs JetStream"
        leafs = monitor(mesh, e, "leafz")["leafs"]
        assert [leaf["name"] for leaf in leafs if leaf["name"] in CORES], f"{e}: {leafs}"
        assert {leaf.get("compression", "off") for leaf in leafs} == {"off"}, leafs
        # The leaf remote holds the edge's nkey seed: the file is the site's alone.
        conf = Path(mesh.configs[e].data_dir) / "nats" / "nats-server.conf"
        assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    for c in CORES:  # a varz read while the server still sets JetStream up lacks "config"
        wait_until(
            lambda c=c: jetstream_of(mesh, c).get("config"),
            10,
            message=lambda c=c: f"{c} runs no JetStream: {jetstream_of(mesh, c)}",
        )
    _, run = running_edge(watch)
    token = int(run.detail["token"])
    # The copy's token is the revision of the lease key in the core's replicated bucket.
    wait_until(lambda: (t := lease_token(mesh)) is not None and t >= token, 10)
    watch.assert_safe()


def test_cut_off_edge_fences_before_a_standby_starts(mesh: LocalMesh, watch: Watcher) -> None:
    edge, first = running_edge(watch)
    [other] = [e for e in EDGES if e != edge]
    old_pid, old_token = int(first.detail["pid"]), int(first.detail["token"])
    cut_at = watch.record_fault(edge, "partition", f"{edge}'s leaf links to every core cut")
    assert mesh.proxy is not None
    mesh.proxy.partition([edge], [*CORES, other])

    new = watch.wait_runs_on("ledger", {other}, 40)[other]
    assert not pid_alive(old_pid)
    assert int(new.detail["token"]) > old_token
    history = watch.history()
    after = [e for e in history if e.mono > cut_at]
    fence = next(e for e in after if e.site == edge and e.kind == "fence")
    fenced = next(e for e in after if e.site == edge and e.kind == "driver-fenced")
    start = next(e for e in after if e.site == other and e.kind == "start")
    assert fence.mono - cut_at <= SIM_TIMINGS.lease_ttl - SIM_TIMINGS.fence_margin + 0.5
    assert fenced.mono < start.mono, "the standby started before the cut-off edge had fenced"
    assert start.token is not None and start.token > old_token
    watch.assert_safe()

    # Heal: the edge's leaf links come back; it sees the other holding the lease.
    watch.record_fault(edge, "heal", "all links")
    mesh.proxy.heal_all()
    wait_until(
        lambda: (
            (s := watch.snaps()).get(edge) is not None
            and all(p.state == "alive" for p in s[edge].peers)
        ),
        40,
        message=watch.tail,
    )
    watch.wait_runs_on("ledger", {other}, 10)
    watch.assert_safe()


def test_an_edge_that_loses_one_core_moves_to_another_and_keeps_its_lease(
    mesh: LocalMesh, watch: Watcher
) -> None:
    """Several leaf remotes: cut the core the edge's leaf link uses, and only that one; the
    edge re-dials another core before its fence deadline, so its copy runs on, same token."""
    edge, first = running_edge(watch)
    [leaf] = monitor(mesh, edge, "leafz")["leafs"]
    core = leaf["name"]
    cut_at = watch.record_fault(edge, "partition", f"{edge}'s leaf link to {core} cut")
    assert mesh.proxy is not None
    mesh.proxy.cut(edge, core)
    moved = wait_until(
        lambda: [x["name"] for x in monitor(mesh, edge, "leafz")["leafs"] if x["name"] != core],
        SIM_TIMINGS.lease_ttl - SIM_TIMINGS.fence_margin,
        message=f"{edge}'s leaf link did not move away from {core}",
    )
    assert moved[0] in CORES
    # Past the fence deadline of a holder that could not renew, its copy still runs (the
    # process table: snapshots from e1 pause while its interest moves to the new core).
    pid = int(first.detail["pid"])
    stays(lambda: pid_alive(pid), SIM_TIMINGS.lease_ttl, f"{edge}'s copy ended\n{watch.tail()}")
    again = watch.wait_runs_on("ledger", {edge}, 10)[edge]
    assert again.detail["token"] == first.detail["token"]
    history = watch.history()
    assert not [e for e in history if e.site == edge and e.kind == "fence" and e.mono > cut_at]
    watch.assert_safe()
