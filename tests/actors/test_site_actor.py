"""SiteActor (`agent/site`): pings, notes and probes; heartbeats out on a real nats-server,
and a probe and a note that cross the mesh between two sites of one process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pykka
import pytest
from nats.aio.msg import Msg
from support.actors import Kit, make_kit
from support.nats_servers import Node
from support.waiting import wait_until

from harmony.actors.clock import SystemClock
from harmony.actors.exports import ExportPolicy
from harmony.actors.messages import (
    GetNotices,
    Heartbeat,
    Notice,
    Notices,
    Ping,
    Pong,
    ProbePeer,
    ProbeResult,
    SendNotice,
)
from harmony.actors.site import SITE_PATH, SiteActor
from harmony.actors.timers import Scheduler
from harmony.config import FailoverTopologyConfig, ProcessDriverConfig, Timings, WorkloadConfig
from harmony.mesh import subjects, wire
from harmony.mesh.connection import MeshConnection
from harmony.mesh.remote import Bridge

IV = 0.2


@pytest.fixture
def kit() -> Iterator[Kit]:
    k = make_kit()
    try:
        yield k
    finally:
        pykka.ActorRegistry.stop_all()
        k.ctx.scheduler.stop()


def test_ping_is_answered_by_this_site(kit: Kit) -> None:
    site = SiteActor.start(kit.ctx, SITE_PATH, None)
    assert site.ask(Ping(text="hi"), timeout=5) == Pong(text="hi", site="a")


def test_notices_keep_the_last_twenty_and_count_them_all(kit: Kit) -> None:
    site = SiteActor.start(kit.ctx, SITE_PATH, None)
    for i in range(25):
        site.tell(Notice(text=f"n{i}", sender="b"))
    got = site.ask(GetNotices(), timeout=5)
    assert isinstance(got, Notices) and got.total == 25
    assert [n.text for n in got.items] == [f"n{i}" for i in range(5, 25)]


def test_a_site_does_not_probe_itself(kit: Kit) -> None:
    site = SiteActor.start(kit.ctx, SITE_PATH, None)
    got = site.ask(ProbePeer(target="a"), timeout=5)
    assert isinstance(got, ProbeResult) and not got.ok
    assert got.error == "a site does not probe itself"


# -- on a real nats-server ----------------------------------------------------------------


class Site:
    """One site of the mesh in this process: its connection, bridge and site actor."""

    def __init__(self, name: str, url: str) -> None:
        w = WorkloadConfig(
            name="w",
            driver=ProcessDriverConfig(command=["true"]),
            topology=FailoverTopologyConfig(primary="a", standbys=["b"]),
        )
        self.kit = make_kit(timings=Timings(heartbeat_interval=IV, ask_timeout=3.0))
        ctx = self.kit.ctx
        ctx.scheduler.stop()  # the kit's scheduler follows a test clock; heartbeats need time
        ctx.clock, ctx.scheduler = SystemClock(), Scheduler(time.monotonic)
        ctx.config = msgspec.structs.replace(ctx.config, site=name, workloads=[w])
        ctx.incarnation = f"{name}-1"
        self.conn = MeshConnection([url], f"site-{name}").start()
        self.conn.wait_connected(10)
        ctx.bridge = Bridge(
            self.conn, "m", name, ctx.directory, 3.0, policy=ExportPolicy(ctx.config)
        )
        ctx.bridge.start()
        assert ctx.bridge.wait_ready(10)
        self.ref = SiteActor.start(ctx, SITE_PATH, None)

    def close(self) -> None:
        self.ref.stop(block=True, timeout=10)
        self.kit.ctx.scheduler.stop()
        if self.kit.ctx.bridge is not None:
            self.kit.ctx.bridge.stop()
        self.conn.close()


@pytest.fixture
def mesh(make_nats_server: Callable[..., Node]) -> Iterator[dict[str, Site]]:
    node = make_nats_server()
    sites: dict[str, Site] = {}
    try:
        for name in ("a", "b"):
            sites[name] = Site(name, node.client_url)
        yield sites
    finally:
        for s in sites.values():
            s.close()
        pykka.ActorRegistry.stop_all()


@pytest.mark.mesh
def test_heartbeats_go_out_on_the_sites_subject_in_sequence(mesh: dict[str, Site]) -> None:
    beats: list[Heartbeat] = []
    lock = threading.Lock()

    def seen(msg: Msg) -> None:
        hb = wire.decode(msg.data)
        with lock:
            beats.append(hb)

    sub = mesh["b"].conn.subscribe(subjects.heartbeat("m", "a"), seen)
    try:
        wait_until(lambda: len(beats) >= 3, 10, message="fewer than 3 heartbeats from a")
    finally:
        sub.unsubscribe()
    with lock:
        got = list(beats)
    assert all(isinstance(hb, Heartbeat) for hb in got)
    assert {(hb.mesh, hb.site, hb.incarnation, hb.interval) for hb in got} == {
        ("m", "a", "a-1", IV)
    }
    seqs = [hb.seq for hb in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


@pytest.mark.mesh
def test_a_probe_reaches_the_other_site_over_the_mesh(mesh: dict[str, Site]) -> None:
    got = mesh["a"].ref.ask(ProbePeer(target="b", timeout=3), timeout=10)
    assert isinstance(got, ProbeResult) and got.ok, got
    assert (got.source, got.target) == ("a", "b") and got.rtt_ms > 0


@pytest.mark.mesh
def test_a_note_sent_to_another_site_arrives_with_its_true_sender(mesh: dict[str, Site]) -> None:
    mesh["a"].ref.ask(SendNotice(target="b", text="hello from a"), timeout=5)

    def notes() -> Any:
        got = mesh["b"].ref.ask(GetNotices(), timeout=5)
        return got.items if got.total else None

    items = wait_until(notes, 10, message="b never got the note")
    assert [(n.text, n.sender) for n in items] == [("hello from a", "a")]
