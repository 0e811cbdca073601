"""The horizontal actor (real Pykka actors, no mesh): what it sees of the sites and copies
goes to the pure planner; only the coordinator turns moves into `MoveWorkload` to the
slot's supervisor; nothing moves during the boot grace; the board says where each slot
runs and why fewer run."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest
from support.actors import Kit, journaled, make_kit
from support.waiting import wait_until

from harmony.actors import messages as m
from harmony.actors.base import HarmonyActor, handles
from harmony.actors.horizontal import HorizontalActor, Replan
from harmony.actors.messages import CopyInfo, PeerInfo
from harmony.actors.peers import PeerChanged, PeerCopies
from harmony.config import Timings, WorkloadConfig
from harmony.config.drivers import ProcessDriverConfig
from harmony.config.topologies import HorizontalTopologyConfig

SITES = ["a", "b", "c", "d"]
PATH = "agent/workload/web"


class SlotStandIn(HarmonyActor):
    """Where a slot's supervisor would be: it only keeps the moves it was sent."""

    kind = "slot"
    moves: list[tuple[str, str]] = []
    lock = threading.Lock()

    @handles(m.MoveWorkload)
    def on_move(self, msg: m.MoveWorkload) -> m.CommandResult:
        with self.lock:
            SlotStandIn.moves.append((self.path.rsplit("/", 1)[-1], msg.target))
        return m.CommandResult(ok=True)


def web(strategy: str = "absolute-consistency") -> WorkloadConfig:
    return WorkloadConfig(
        name="web",
        strategy=strategy,  # type: ignore[arg-type]
        driver=ProcessDriverConfig(command=["true"]),
        topology=HorizontalTopologyConfig(sites=SITES, replicas=3, settle=0.0),
    )


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    SlotStandIn.moves = []
    with journaled(make_kit(timings=Timings(heartbeat_interval=3600)), tmp_path) as k:
        yield k


def peers(kit: Kit, states: dict[str, str]) -> None:
    infos = {s: PeerInfo(site=s, state=st, last_heartbeat_age=0.1) for s, st in states.items()}
    kit.ctx.peer_view.publish(infos, kit.clock.now)


def start(kit: Kit, site: str = "a", strategy: str = "absolute-consistency") -> pykka.ActorRef[Any]:
    import msgspec

    kit.ctx.config = msgspec.structs.replace(kit.ctx.config, site=site)
    for i in range(3):
        SlotStandIn.start(kit.ctx, f"agent/workload/web--{i}", None)
    return HorizontalActor.start(kit.ctx, PATH, None, web(strategy))


def copies(kit: Kit, ref: pykka.ActorRef[Any], where: dict[str, list[str]]) -> None:
    for site, names in where.items():
        info = {n: CopyInfo(started_wall=1.0) for n in names}
        if site == kit.ctx.site:
            for n in names:
                kit.ctx.copies.set(n, CopyInfo(started_wall=1.0))
        else:
            ref.tell(PeerCopies(site, info))


def detail(kit: Kit) -> dict[str, str]:
    info = kit.ctx.board.get(PATH)
    return dict(info.detail) if info else {}


def test_the_coordinator_replaces_a_lost_sites_slot_after_the_boot_grace(kit: Kit) -> None:
    peers(kit, {"b": "alive", "c": "alive", "d": "alive"})
    ref = start(kit)
    copies(kit, ref, {"a": ["web--0"], "b": ["web--1"], "c": ["web--2"]})
    ref.tell(Replan())
    wait_until(lambda: detail(kit).get("slots") == "0@a 1@b 2@c", 5)
    assert detail(kit)["coordinator"] == "a" and detail(kit)["replicas"] == "3/3"

    peers(kit, {"b": "silent", "c": "alive", "d": "alive"})
    ref.tell(PeerChanged("b", "alive", "silent", 5.0))
    wait_until(lambda: detail(kit).get("replicas") == "2/3", 5)
    assert SlotStandIn.moves == []  # within the boot grace: the slots' own failover acts

    kit.clock.now += kit.ctx.config.timings.lease_ttl + 3 * 3600
    ref.tell(Replan())
    wait_until(lambda: SlotStandIn.moves == [("web--1", "d")], 5)
    assert detail(kit)["moving"] == "1->d"
    ref.tell(Replan())
    wait_until(lambda: detail(kit).get("moving") == "1->d", 5)
    assert SlotStandIn.moves == [("web--1", "d")]  # a pending move is not sent again

    copies(kit, ref, {"d": ["web--1"]})
    wait_until(lambda: detail(kit).get("slots") == "0@a 1@d 2@c" and not detail(kit)["moving"], 5)


def test_a_site_that_is_not_the_coordinator_plans_but_never_moves(kit: Kit) -> None:
    peers(kit, {"a": "alive", "c": "alive", "d": "alive"})
    ref = start(kit, site="b")
    kit.clock.now += 10 * 3600
    copies(kit, ref, {"a": ["web--0"], "c": ["web--2"]})
    ref.tell(Replan())
    wait_until(lambda: detail(kit).get("replicas") == "2/3", 5)
    assert detail(kit)["coordinator"] == "a"
    assert SlotStandIn.moves == [] and detail(kit)["moving"] == ""


def test_too_few_sites_runs_what_fits_and_says_why(kit: Kit) -> None:
    peers(kit, {"b": "silent", "c": "silent", "d": "silent"})
    ref = start(kit)
    copies(kit, ref, {"a": ["web--0"]})
    ref.tell(Replan())
    wait_until(lambda: detail(kit).get("replicas") == "1/3", 5)
    kit.clock.now += 10 * 3600
    ref.tell(Replan())
    wait_until(lambda: "no usable live site has room" in detail(kit).get("why", ""), 5)
    assert detail(kit)["phase"] == "degraded" and detail(kit)["replicas"] == "1/3"
    assert SlotStandIn.moves == []


def test_a_split_brain_slot_seen_twice_after_a_heal_is_aligned_on_one_copy(kit: Kit) -> None:
    peers(kit, {"b": "alive", "c": "alive", "d": "alive"})
    ref = start(kit, strategy="split-brain-allowed")
    copies(kit, ref, {"a": ["web--0"], "b": ["web--1"], "c": ["web--2"], "d": ["web--1"]})
    wait_until(lambda: detail(kit).get("slots") == "0@a 1@b 2@c", 5)
    kit.clock.now += 10 * 3600  # past the boot grace, with every copy known
    ref.tell(Replan())
    # every site of slot 1 is told to prefer b's copy (the first by name: the plan keeps it)
    wait_until(lambda: SlotStandIn.moves == [("web--1", "b")], 5)
    ref.tell(Replan())
    wait_until(lambda: detail(kit).get("slots") == "0@a 1@b 2@c", 5)
    assert SlotStandIn.moves == [("web--1", "b")]  # not again within a lease TTL, nor others
