"""Horizontal + split-brain-allowed: each slot a SplitBrainAllowed failover workload under
its slot topology; a partition runs a slot on both sides, the heal leaves one copy per slot.

What it shows for the wiring: a move must reach every site of the slot, including those cut
off when it was made (a durable move record, read again on heal): a site that never heard
of the move keeps its own copy by the reconcile policy, and the slot then runs twice.
"""

from __future__ import annotations

from support.sba_world import SbaWorld

from harmony.strategies import (
    HorizontalSpec,
    HorizontalState,
    Params,
    SiteFacts,
    plan_horizontal,
    slot_topology,
)
from harmony.strategies.events import MoveRequested
from harmony.strategies.horizontal import MoveKind


def slot_worlds(n: int, replicas: int) -> list[SbaWorld]:
    worlds = []
    for slot in range(replicas):
        w = SbaWorld(n, Params())
        topology = slot_topology(slot, None, w.names)
        assert topology is not None
        w.topology = topology
        for name in w.names:
            w.boot(name)
        worlds.append(w)
    return worlds


def cut_off(worlds: list[SbaWorld], site: str, group: int) -> None:
    for w in worlds:
        w.nodes[site].group = group
        w.settle()


def test_a_partition_runs_a_slot_twice_and_the_heal_keeps_the_planned_copy() -> None:
    worlds = slot_worlds(3, 2)
    for w in worlds:
        w.settle()
    assert [w.running_in(0) for w in worlds] == [["s0"], ["s1"]]

    cut_off(worlds, "s0", 1)  # side 0 (s1, s2) replaces slot 0 on s1 at once
    assert [w.running_in(0) for w in worlds] == [["s1"], ["s1"]]
    assert worlds[0].running_in(1) == ["s0"]

    # the planner on side 0 sees s1 crowded and sheds the higher slot to s2
    sites = [SiteFacts("s0", alive=False), SiteFacts("s1"), SiteFacts("s2")]
    p = plan_horizontal(HorizontalSpec(2), HorizontalState(), sites, {0: "s1", 1: "s1"}, 0.0)
    [m] = p.moves
    assert (m.slot, m.source, m.target, m.kind) == (1, "s1", "s2", MoveKind.EVICT)
    w1 = worlds[1]
    assert w1.running_in(1) == ["s0"]  # slot 1 runs on the cut-off side too
    for name in ("s1", "s2"):  # the cut-off s0 does not hear of the move
        w1.feed(name, MoveRequested("s2"))
    w1.settle()
    assert w1.running_in(0) == ["s2"]

    cut_off(worlds, "s0", 0)  # heal: s0 never heard of the move and keeps its copy
    assert sorted(w1.running_in(0)) == ["s0", "s2"]
    w1.feed("s0", MoveRequested("s2"))  # the move record, read again after the heal
    w1.settle()
    assert [w.running_in(0) for w in worlds] == [["s0"], ["s2"]]  # one copy per slot
