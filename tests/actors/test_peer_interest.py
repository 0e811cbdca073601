"""Interest-scoped liveness: whose heartbeats an agent subscribes to (`actors/interest.py`),
and the subscriptions a PeerWatch holds on a real nats-server."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator

import msgspec
import pykka
import pytest
from support.actors import Kit, make_kit
from support.nats_servers import Node
from support.waiting import wait_until

from harmony.actors.clock import SystemClock
from harmony.actors.exports import ExportPolicy
from harmony.actors.interest import PeerRouting, core_sites, heartbeat_interest, topology_sites
from harmony.actors.messages import Heartbeat
from harmony.actors.peers import PeerWatch
from harmony.actors.timers import Scheduler
from harmony.config import (
    FailoverTopologyConfig,
    ProcessDriverConfig,
    SiteConfig,
    Timings,
    WorkloadConfig,
)
from harmony.mesh import subjects, wire
from harmony.mesh.connection import MeshConnection
from harmony.mesh.remote import Bridge

IV = 0.2


def workload(name: str, primary: str, *standbys: str) -> WorkloadConfig:
    return WorkloadConfig(
        name=name,
        driver=ProcessDriverConfig(command=["true"]),
        topology=FailoverTopologyConfig(primary=primary, standbys=list(standbys)),
    )


def site_config(site: str, *workloads: WorkloadConfig) -> SiteConfig:
    return SiteConfig(mesh="m", site=site, workloads=list(workloads))


def test_peer_news_is_routed_to_the_workloads_whose_topology_names_the_peer() -> None:
    routing = PeerRouting()
    routing.add("workload/web", ["e1", "e2"], ["web"])
    routing.add("workload/db", ["e3", "e1"], ["db"])
    routing.add("workload/api", ["e1", "e2", "e4"], ["api--0", "api--1"])  # horizontal
    assert routing.concerned("e1") == ["workload/web", "workload/db", "workload/api"]
    assert routing.concerned("e2") == ["workload/web", "workload/api"]
    assert routing.concerned("c1") == []  # a core in no topology: nobody
    # a site outside a topology that announces a copy of it is followed by its actor
    routing.copies("c1", ["db", "other"])
    assert routing.concerned("c1") == ["workload/db"]
    routing.copies("c1", ["api--1"])  # its full list: db no longer
    assert routing.concerned("c1") == ["workload/api"]
    routing.copies("c1", [])
    assert routing.concerned("c1") == []


def test_an_all_core_mesh_hears_every_site() -> None:
    cfg = site_config("a", workload("w", "a", "b"))
    assert core_sites(cfg) is None  # no roles configured: every site is a core
    assert heartbeat_interest(cfg, None) is None


def test_with_cores_a_site_hears_its_topologies_and_the_core_only() -> None:
    cfg = site_config(
        "e1",
        workload("web", "e1", "e2"),
        workload("db", "e3", "e1", "e4"),
        workload("elsewhere", "e7", "e8"),  # placed elsewhere: not this site's business
    )
    assert topology_sites(cfg) == {"e1", "e2", "e3", "e4"}
    assert heartbeat_interest(cfg, ["c1", "c2", "c3"]) == {"e2", "e3", "e4", "c1", "c2", "c3"}
    assert heartbeat_interest(cfg, ["c1"], extra=["e9"]) == {"e2", "e3", "e4", "c1", "e9"}
    # A core (or witness) with no workloads hears the other cores.
    assert heartbeat_interest(site_config("c1"), ["c1", "c2", "c3"]) == {"c2", "c3"}


# -- a running PeerWatch on a real nats-server ----------------------------------------------


class Watcher:
    """Site a's PeerWatch, with its own connection and bridge, on a real server."""

    def __init__(self, url: str, cores: tuple[str, ...] = ()) -> None:
        self.kit: Kit = make_kit(timings=Timings(heartbeat_interval=IV))
        ctx = self.kit.ctx
        ctx.scheduler.stop()
        ctx.clock, ctx.scheduler = SystemClock(), Scheduler(time.monotonic)
        nats = msgspec.structs.replace(ctx.config.nats, cores=list(cores))
        ctx.config = msgspec.structs.replace(
            ctx.config, workloads=[workload("w", "a", "b")], nats=nats
        )
        self.conn = MeshConnection([url], "site-a").start()
        self.conn.wait_connected(10)
        ctx.bridge = Bridge(
            self.conn, "m", "a", ctx.directory, 3.0, policy=ExportPolicy(ctx.config)
        )
        ctx.bridge.start()
        assert ctx.bridge.wait_ready(10)
        self.ref = PeerWatch.start(ctx, "agent/peers", None)

    def states(self) -> dict[str, str]:
        return {p.site: p.state for p in self.kit.ctx.peer_view.read(time.monotonic())}

    def rejected(self) -> dict[str, int]:
        assert self.kit.ctx.bridge is not None
        return self.kit.ctx.bridge.stats.rejected()

    def close(self) -> None:
        self.ref.stop(block=True, timeout=10)
        self.kit.ctx.scheduler.stop()
        if self.kit.ctx.bridge is not None:
            self.kit.ctx.bridge.stop()
        self.conn.close()


def hb_subjects(node: Node) -> set[str]:
    return {s for s in server_subjects(node, "site-a") if s.endswith(".hb")}


def server_subjects(node: Node, name: str) -> set[str]:
    """The subjects the connection `name` holds, as the server sees them (monitoring)."""
    with urllib.request.urlopen(f"{node.http_url}/connz?subs=1", timeout=5) as r:
        conns = json.load(r)["connections"] or []
    return {s for c in conns if c.get("name") == name for s in c.get("subscriptions_list", [])}


@pytest.fixture
def world(make_nats_server: Callable[..., Node]) -> Iterator[tuple[Node, Watcher, MeshConnection]]:
    node = make_nats_server()
    watcher = Watcher(node.client_url)
    others = MeshConnection([node.client_url], "others").start()
    try:
        others.wait_connected(10)
        yield node, watcher, others
    finally:
        others.close()
        watcher.close()
        pykka.ActorRegistry.stop_all()


def beat(conn: MeshConnection, *sites: str) -> None:
    for site in sites:
        hb = Heartbeat(mesh="m", site=site, seq=1, incarnation="one", mono=0, wall=0, interval=IV)
        conn.publish(subjects.heartbeat("m", site), wire.encode(hb))


@pytest.mark.mesh
def test_an_all_core_agent_holds_the_wildcard(
    world: tuple[Node, Watcher, MeshConnection],
) -> None:
    node, watcher, others = world
    wait_until(lambda: hb_subjects(node) == {subjects.heartbeats("m")}, 10)
    wait_until(lambda: (beat(others, "b", "c"), watcher.states())[1] == {"b": "alive"}, 10)
    # c is heard, and refused: it is no site of this mesh.
    wait_until(lambda: watcher.rejected().get("unknown-sender", 0) > 0, 10)


@pytest.mark.mesh
def test_with_cores_an_agent_subscribes_to_its_peers_only(
    make_nats_server: Callable[..., Node],
) -> None:
    # Site a is an edge of a mesh whose cores are x, y and z, and its one workload's
    # topology is a, b: it hears b and the cores, not c.
    node = make_nats_server()
    watcher = Watcher(node.client_url, cores=("x", "y", "z"))
    others = MeshConnection([node.client_url], "others").start()
    try:
        others.wait_connected(10)
        want = {subjects.heartbeat("m", s) for s in ("b", "x", "y", "z")}
        wait_until(lambda: hb_subjects(node) == want, 10)
        wait_until(
            lambda: (
                (beat(others, "b", "c", "x", "y", "z"), watcher.states())[1]
                == {"b": "alive", "x": "alive", "y": "alive", "z": "alive"}
            ),
            10,
        )
        # c's heartbeats never reached the agent: nothing was refused.
        assert "unknown-sender" not in watcher.rejected()
    finally:
        others.close()
        watcher.close()
        pykka.ActorRegistry.stop_all()
