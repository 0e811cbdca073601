"""Scenarios of a core-and-edge mesh: the `cores` field, its checks, the world's idea of
who reaches whom through the core, and two library scenarios on real processes.

The other two core-and-edge scenarios (core-majority-loss, stream-leader-core-killed) run
with the rest of the library in `harmony sim suite` (`make chaos`): together the four take
about three minutes on two cores, and CI runs only the two fastest.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console
from support.scenarios import LIBRARY, assert_nothing_left, since_first_fault, why

from harmony.sim.backend import ProcessBackend
from harmony.sim.runner import run_scenario
from harmony.sim.scenario import WorkloadSpec
from harmony.sim.scenario_file import ScenarioError, load_scenario, parse_scenario
from harmony.sim.world import World, partition_cuts

CORES = ["c1", "c2", "c3"]
SITES = [*CORES, "e1", "e2"]
HEAD = 'name = "t"\nsites = ["c1", "c2", "c3", "e1", "e2"]\ncores = ["c1", "c2", "c3"]\n'
WORKLOAD = '[[workloads]]\nname = "ledger"\nprimary = "e1"\nstandbys = ["e2"]\n'
AC = WorkloadSpec(name="ledger", primary="e1", standbys=["e2"])
SB = WorkloadSpec(name="web", strategy="split-brain-allowed", primary="e1", standbys=["e2"])


def world(**kw: object) -> World:
    return World(SITES, cores=set(CORES), **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- the field's checks
@pytest.mark.parametrize(
    ("head", "field", "words"),
    [
        ('sites = ["a", "b", "c", "d"]\ncores = ["a", "b"]\n', "cores", "odd number"),
        ('sites = ["a", "b", "c", "d"]\ncores = ["a"]\n', "cores", "at least 3"),
        ('sites = ["a", "b", "c", "d"]\ncores = ["a", "b", "x"]\n', "cores[2]", "not a site"),
        ('sites = ["a", "b", "c", "d"]\ncores = ["a", "b", "a"]\n', "cores", "twice"),
        ('sites = ["a", "b", "c"]\ncores = ["a", "b", "c"]\n', "cores", "every site is a core"),
        (
            'sites = ["a", "b", "c", "d"]\nwitnesses = ["w"]\ncores = ["a", "b", "c"]\n',
            "witnesses[0]",
            "a witness is a core",
        ),
    ],
)
def test_a_bad_core_list_names_the_field(head: str, field: str, words: str) -> None:
    with pytest.raises(ScenarioError) as e:
        parse_scenario('name = "t"\n' + head)
    assert e.value.field == field
    assert words in str(e.value)


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ('[[steps]]\ndo = "flap"\nlinks = [["e1", "e2"]]\n', "steps[0].links[0]", "two edges"),
        (
            '[[steps]]\ndo = "partition"\ngroups = [["e1"], ["@rest"]]\none_way = true\n',
            "steps[0].one_way",
            "leaf link",
        ),
        ('[[steps]]\ndo = "drop"\nprobability = 0.5\none_way = true\n', "steps[0].one_way", ""),
        ('[[steps]]\ndo = "kill"\nsite = "@leaf:c1"\n', "steps[0].site", "@leaf:<edge>"),
        ('[random]\nfaults = ["one-way"]\n[[steps]]\ndo = "heal"\n', "random.faults[0]", ""),
    ],
)
def test_steps_a_core_and_edge_mesh_cannot_carry_out_are_refused(
    body: str, field: str, words: str
) -> None:
    with pytest.raises(ScenarioError) as e:
        parse_scenario(HEAD + WORKLOAD + body)
    assert e.value.field == field
    assert words in str(e.value)


def test_core_and_edge_steps_and_random_kinds() -> None:
    sc = parse_scenario(
        HEAD + WORKLOAD + '[[steps]]\ndo = "partition"\ngroups = [["e1"], ["@leaf:e1"]]\n'
        '[[steps]]\ndo = "flap"\nlinks = [["e1", "c2"]]\n'
    )
    assert sc.edges == ["e1", "e2"]
    assert "one-way" not in sc.random_kinds()
    assert "one-way" in parse_scenario('name = "t"\nsites = ["a", "b"]\n').random_kinds()


def test_the_process_backend_starts_the_named_cores(tmp_path: Path) -> None:
    """LocalMesh takes its cores first: the scenario's cores, wherever they are listed."""
    sc = parse_scenario(
        'name = "t"\nsites = ["e1", "c1", "e2", "c2", "c3"]\ncores = ["c3", "c1", "c2"]\n'
    )
    mesh = ProcessBackend(sc, tmp_path).mesh
    assert sorted(mesh.core_sites()) == CORES
    assert mesh.proxied and mesh.cores == 3


# ---------------------------------------------------------------------- who reaches whom
def test_an_edge_cut_from_every_core_is_a_side_of_its_own() -> None:
    w = world(cut=partition_cuts([["e1"], ["c1", "c2", "c3", "e2"]]))
    assert w.expect(AC) == {"e1": 0, "c1,c2,c3,e2": 1}
    assert w.expect(SB) == {"e1": 1, "c1,c2,c3,e2": 1}


def test_an_edge_that_loses_one_leaf_link_still_reaches_everyone() -> None:
    w = world(cut=partition_cuts([["e1"], ["c1"]]))
    assert w.expect(AC) == {"c1,c2,c3,e1,e2": 1}
    w = world(cut=partition_cuts([["e1"], ["c1", "c2"]]))  # one leaf link left, to c3
    assert w.expect(AC) == {"c1,c2,c3,e1,e2": 1}


def test_edges_reach_each_other_only_through_the_core() -> None:
    # e1 only on c1, e2 only on c2, and the route c1-c2 cut: a message crosses at most
    # one route, so e1 and e2 reach c3 but not each other (not transitive: unknown).
    cut = partition_cuts([["e1"], ["c2", "c3"]]) | partition_cuts([["e2"], ["c1", "c3"]])
    cut |= partition_cuts([["c1"], ["c2"]])
    assert world(cut=cut).expect(AC) is None
    # A "cut" between two edges is no link at all: nothing changes.
    assert world(cut=partition_cuts([["e1"], ["e2"]])).expect(AC) == {"c1,c2,c3,e1,e2": 1}


def test_the_core_majority_decides_and_an_edge_needs_a_live_core() -> None:
    w = world(down={"c2", "c3"})
    assert w.expect(AC) == {"c1,e1,e2": 0, "(down)": 0}
    assert w.expect(SB) == {"c1,e1,e2": 1, "(down)": 0}
    # e1's only leaf link left goes to a dead core: it is alone.
    w = world(down={"c3"}, cut=partition_cuts([["e1"], ["c1", "c2"]]))
    assert w.expect(AC) == {"e1": 0, "c1,c2,e2": 1, "(down)": 0}


# ---------------------------------------------------------------------- on real processes
@pytest.mark.mesh
@pytest.mark.parametrize("name", ["edge-isolated", "edge-flapping"])
def test_core_and_edge_scenario_passes_on_ground_truth(name: str, tmp_path: Path) -> None:
    scenario = load_scenario(LIBRARY / f"{name}.toml")
    workdir = tmp_path / "run"
    result = run_scenario(scenario, workdir, console=Console(quiet=True), live=False)
    assert_nothing_left(workdir)
    assert result.ok, why(result)
    assert result.sources["ledger"] == "scans + records", result.sources
    assert result.intervals is not None
    cuts = [e.reason for e in result.events if e.kind == "partition"]
    ledger = since_first_fault(result, "ledger")
    if name == "edge-isolated":
        assert ledger == {"e1", "e2"}, f"no failover to the standby edge: {ledger}"
    else:
        # Each round cut the core e1's leaf link used then: it moved between cores.
        assert len(set(cuts)) >= 2, cuts
