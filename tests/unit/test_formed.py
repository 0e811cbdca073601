"""When a mesh counts as formed: every site sees alive the sites it listens to."""

from __future__ import annotations

from harmony.actors.messages import ActorInfo, PeerInfo, Snapshot
from harmony.client import expected_peers, mesh_formed


def snap(
    site: str, alive: set[str], hears: str = "all", unknown: set[str] | frozenset[str] = frozenset()
) -> Snapshot:
    peers = [PeerInfo(site=s, state="alive") for s in sorted(alive)]
    peers += [PeerInfo(site=s, state="unknown") for s in sorted(unknown)]
    watch = ActorInfo(path="agent/peers", kind="peers", state="running", detail={"hears": hears})
    return Snapshot(
        mesh="m",
        site=site,
        witness=False,
        incarnation="i",
        mono=0.0,
        wall=0.0,
        actors=[watch],
        peers=peers,
    )


def test_a_site_that_hears_all_must_see_every_other_site() -> None:
    sites = {"a", "b", "c"}
    assert expected_peers(snap("a", {"b"}), sites) == {"b", "c"}
    formed = {s: snap(s, sites - {s}) for s in sites}
    assert not mesh_formed(formed | {"a": snap("a", {"b"})}, sites)
    assert mesh_formed(formed, sites)


def test_an_edge_that_hears_its_interest_must_see_only_those() -> None:
    # Cores c1..c3 hear everyone; edges e1 and e2 share no workload: each hears the cores.
    sites = {"c1", "c2", "c3", "e1", "e2"}
    cores = {"c1", "c2", "c3"}
    snaps = {c: snap(c, sites - {c}) for c in cores}
    snaps |= {e: snap(e, cores, hears="3") for e in ("e1", "e2")}
    assert expected_peers(snaps["e1"], sites) == cores
    assert mesh_formed(snaps, sites)
    # A core it listens to but has not heard yet: not formed.
    snaps["e1"] = snap("e1", {"c1", "c2"}, hears="3", unknown={"c3"})
    assert not mesh_formed(snaps, sites)


def test_a_site_that_did_not_answer_is_not_formed() -> None:
    sites = {"a", "b"}
    assert not mesh_formed({"a": snap("a", {"b"})}, sites)
