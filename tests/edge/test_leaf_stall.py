"""A leaf link that stalls without closing, in a core-and-edge mesh of real agents.

3 cores, 2 edges, secure, every leaf link through the fault proxy. The proxy holds every
byte of one edge's link to its core in both directions and keeps the TCP connection open:
nothing closes, so only the edge server's pings (`harmony.strategies.timing.leaf_ping`)
can notice. At nats-server's default (2 min) the link was still on the stalled core at the
edge's fence deadline (this test failed there); now the edge drops the link, re-dials
another core and renews its lease before the deadline.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from support.meshes import Watcher
from support.processes import pid_alive
from support.waiting import stays, wait_until

from harmony.actors.messages import ActorInfo
from harmony.sim.launch import LocalMesh
from harmony.sim.scenario import SIM_TIMINGS
from harmony.strategies.timing import leaf_ping

pytestmark = pytest.mark.mesh

CORES = ("a", "b", "c")  # as tests/edge/conftest.py starts them
EDGES = ("e1", "e2")


def leafs(mesh: LocalMesh, site: str) -> list[dict[str, Any]]:
    port = mesh.configs[site].nats.http_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/leafz", timeout=5) as r:
        found: list[dict[str, Any]] = json.load(r).get("leafs") or []
        return found


def running_edge(watch: Watcher) -> tuple[str, ActorInfo]:
    """The edge that runs the ledger, once exactly one site runs it and its copy acted.
    Usually the primary e1; e2 when it booted first (both are edges: either will do)."""
    return watch.wait_one_runner("ledger", EDGES, 30)


def test_leaf_ping_fits_the_fence_budget() -> None:
    """Detection and reconnect take at most half of the edge's fence deadline."""
    ping = leaf_ping(SIM_TIMINGS)
    deadline = SIM_TIMINGS.lease_ttl - SIM_TIMINGS.fence_margin
    assert ping.detection + ping.reconnect <= deadline / 2 + 1e-9, ping


def test_a_stalled_leaf_link_is_redialled_before_the_edge_fences(
    mesh: LocalMesh, watch: Watcher
) -> None:
    edge, first = running_edge(watch)
    [link] = leafs(mesh, edge)
    core = link["name"]
    assert mesh.proxy is not None
    proxied = mesh.proxy.links[(edge, core)]
    before = proxied.accepted
    stall_at = watch.record_fault(edge, "stall", f"{edge}'s leaf link to {core} stalled")
    # Hold the bytes both ways; the connections stay open (a one-way cut closes nothing).
    mesh.proxy.cut(edge, core, both=False)
    mesh.proxy.cut(core, edge, both=False)
    assert proxied.writers, "the stalled link's connection was closed"
    deadline = SIM_TIMINGS.lease_ttl - SIM_TIMINGS.fence_margin
    moved = wait_until(
        lambda: [x["name"] for x in leafs(mesh, edge) if x["name"] != core],
        deadline,
        message=lambda: f"{edge}'s leaf link is still on {core}: {leafs(mesh, edge)}",
    )
    assert moved[0] in CORES
    assert proxied.accepted == before, "a connection through the cut link"
    # Past the fence deadline of a holder that could not renew, its copy still runs: the
    # same process (the process table), the same token, no fence in the journal.
    pid = int(first.detail["pid"])
    stays(lambda: pid_alive(pid), SIM_TIMINGS.lease_ttl, f"{edge}'s copy ended\n{watch.tail()}")
    again = watch.wait_runs_on("ledger", {edge}, 10)[edge]
    assert again.detail["token"] == first.detail["token"]
    assert int(again.detail["pid"]) == pid
    history = watch.history()
    fenced = [e for e in history if e.site == edge and e.kind == "fence" and e.mono > stall_at]
    assert not fenced, fenced
    watch.assert_safe()
    mesh.proxy.heal_all()
