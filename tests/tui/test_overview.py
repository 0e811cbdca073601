"""A large mesh in the TUI's model (pure logic, no Textual, no NATS): summaries make the
sites, expanded sites carry their actor trees, the filter narrows by site or workload."""

from __future__ import annotations

from typing import Any

from harmony.actors.messages import ActorInfo, Snapshot
from harmony.mesh.summaries import SiteSummary, Summary
from harmony.tui import overview
from harmony.tui.model import Key, MeshModel


def summary(site: str, placed: list[str], age: float = 1.0, **fields: Any) -> Summary:
    value = SiteSummary(
        site=site,
        incarnation="x",
        state="running",
        wall=1.0,
        workloads={"running": len(placed)},
        placed=placed,
        **fields,
    )
    return Summary(value, age)


def snapshot(site: str, workloads: list[str]) -> Snapshot:
    actors = [ActorInfo(path="agent", kind="agent", state="running")]
    for w in workloads:
        actors.append(
            ActorInfo(path=f"agent/workload/{w}", kind="workload-supervisor", state="running")
        )
        actors.append(ActorInfo(path=f"agent/workload/{w}/run", kind="workload", state="running"))
    return Snapshot(
        mesh="m", site=site, witness=False, incarnation="x", mono=0, wall=0, actors=actors, peers=[]
    )


def large_model() -> MeshModel:
    model = MeshModel("m")
    found = {f"s{i:02}": summary(f"s{i:02}", [f"web{i}", "db"]) for i in range(12)}
    found["s11"] = summary("s11", ["db"], age=600.0)  # stopped writing (interval 5 s)
    model.apply_summaries(found, at=100.0)
    return model


def test_summaries_make_one_folded_site_each_and_count_states() -> None:
    model = large_model()
    assert model.large
    assert model.tree() == [(Key(f"s{i:02}"), None) for i in range(12)]
    assert model.sites["s11"].state == "stale" and model.sites["s00"].state == "running"
    assert overview.site_counts(model.summaries) == {"running": 11, "stale": 1}
    assert overview.workload_counts(model.summaries) == {"running": 22}  # not the stale one's
    trouble, hidden = overview.unhealthy(model.summaries)
    assert trouble == [("s11", "site", "no summary for 600 s (last: running)")] and not hidden
    root = overview.root_label(model, "connected", 101.0).plain
    assert root.startswith("mesh m  12 sites: 11 running, 1 stale"), root


def test_an_expanded_site_carries_its_tree_until_collapsed() -> None:
    model = large_model()
    model.expand("s03")
    model.apply_sites({"s03": snapshot("s03", ["web3"]), "s04": snapshot("s04", [])}, 101.0)
    tree = model.tree()
    assert (Key("s03", "agent/workload/web3/run"), Key("s03", "agent/workload/web3")) in tree
    assert not any(k.site == "s04" and k.path for k, _ in tree)  # not expanded: dropped
    assert model.sites["s03"].answered
    model.apply_sites({"s03": None}, 102.0)
    assert not model.sites["s03"].answered and model.sites["s03"].snapshot is not None
    model.collapse("s03")
    assert model.sites["s03"].snapshot is None
    assert not any(k.path for k, _ in model.tree())


def test_the_filter_matches_site_or_workload_names_in_any_case() -> None:
    model = large_model()
    model.filter_text = "S1"
    assert [k.site for k, _ in model.tree()] == ["s10", "s11"]
    model.filter_text = "WEB1"  # web1, web10 (s11 runs only db)
    assert [k.site for k, _ in model.tree()] == ["s01", "s10"]
    model.expand("s01")
    model.apply_sites({"s01": snapshot("s01", ["web1", "db"])}, 101.0)
    paths = [k.path for k, _ in model.tree() if k.site == "s01"]
    assert "agent/workload/web1" in paths and "agent/workload/db" not in paths
    assert "agent" in paths  # the workloads hang under it
    model.filter_text = ""
    assert len([k for k, _ in model.tree() if not k.path]) == 12


def test_a_small_model_is_untouched_by_the_large_view() -> None:
    model = MeshModel("m")
    model.apply({"a": snapshot("a", ["w"])}, 1.0)
    model.filter_text = "zzz"  # only a large mesh filters
    assert not model.large
    assert Key("a", "agent/workload/w/run") in dict(model.tree())
    assert overview.root_label(model, "connected", 1.0).plain.startswith("mesh m  1 sites")
