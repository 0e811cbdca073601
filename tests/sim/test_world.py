"""Desired states: where each workload should run, given what the simulation broke."""

from __future__ import annotations

from harmony.sim.scenario import WorkloadSpec
from harmony.sim.world import World, link_pairs, partition_cuts

AC = WorkloadSpec(name="ledger", primary="a", standbys=["b", "c"])
SB = WorkloadSpec(name="web", strategy="split-brain-allowed", primary="a", standbys=["b", "c"])


def test_whole_mesh_one_copy() -> None:
    w = World(["a", "b", "c"])
    assert w.expect(AC) == {"a,b,c": 1}
    assert w.expect(SB) == {"a,b,c": 1}


def test_minority_partition() -> None:
    w = World(["a", "b", "c"], cut=partition_cuts([["a"], ["b", "c"]]))
    assert w.expect(AC) == {"a": 0, "b,c": 1}
    assert w.expect(SB) == {"a": 1, "b,c": 1}


def test_majority_loss_means_no_copy_anywhere() -> None:
    w = World(["a", "b", "c"], down={"b", "c"})
    assert w.expect(AC) == {"a": 0, "(down)": 0}
    assert w.expect(SB) == {"a": 1, "(down)": 0}


def test_witness_counts_as_a_vote_but_runs_nothing() -> None:
    ac = WorkloadSpec(name="ledger", primary="a", standbys=["b"])
    w = World(["a", "b", "w"], cut=partition_cuts([["a"], ["b", "w"]]))
    assert w.expect(ac) == {"a": 0, "b,w": 1}
    w = World(["a", "b", "w"], cut=partition_cuts([["b"], ["w"]]))  # a bridges: unknown
    assert w.expect(ac) is None


def test_bridge_one_way_and_pause_are_unknown() -> None:
    assert World(["a", "b", "c"], cut=partition_cuts([["a"], ["c"]])).expect(AC) is None
    one_way = partition_cuts([["a"], ["b", "c"]], one_way=True)
    assert one_way == {("a", "b"), ("a", "c")}
    assert World(["a", "b", "c"], cut=one_way).expect(AC) is None
    assert World(["a", "b", "c"], paused={"a"}).expect(SB) is None


def test_stream_replicas_decide_the_majority() -> None:
    # Five servers, lease stream on a, b, c only: {a, b} holds two of its three replicas.
    w = World(["a", "b", "c", "d", "e"], cut=partition_cuts([["a", "b"], ["c", "d", "e"]]))
    w.stream_peers = {"a", "b", "c"}
    assert w.expect(AC) == {"a,b": 1, "c,d,e": 0}


def test_link_pairs() -> None:
    assert link_pairs([["a", "b"]], ["a", "b", "c"]) == {("a", "b"), ("b", "a")}
    assert link_pairs([["a", "b"]], ["a", "b"], one_way=True) == {("a", "b")}
    assert len(link_pairs([], ["a", "b", "c"])) == 6
