"""The simulator knows horizontal workloads: a scenario's horizontal workload is configured
as written and judged as the slots the agent runs (same names, same topologies), and the
`horizontal` checker says from the history whether every slot runs, spread, at the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from harmony.config.slots import slot_workloads
from harmony.config.topologies import HorizontalTopologyConfig
from harmony.sim.backend import workload_config
from harmony.sim.history import Interval
from harmony.sim.horizontal import check_horizontal, configured
from harmony.sim.scenario_file import ScenarioError, load_scenario, parse_scenario

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios"
SITES = ["s1", "s2", "s3", "s4", "s5", "s6"]


def test_the_library_scenario_is_judged_by_the_slots_the_agent_runs(tmp_path: Path) -> None:
    sc = load_scenario(LIBRARY / "horizontal-5-over-6.toml")
    assert [w.name for w in sc.workloads] == [f"web--{i}" for i in range(5)]
    assert [w.name for w in configured(sc)] == ["web"]
    cfg = workload_config(configured(sc)[0], tmp_path, "s1")
    assert isinstance(cfg.topology, HorizontalTopologyConfig) and cfg.topology.replicas == 5
    agent = slot_workloads(cfg)
    assert [(w.name, w.topology.primary, list(w.topology.standbys)) for w in agent] == [
        (w.name, w.primary, list(w.standbys)) for w in sc.workloads
    ]
    assert {w.strategy for w in sc.workloads} == {"absolute-consistency"}
    assert all(sorted(w.eligible_sites(sc.labels)) == SITES for w in sc.workloads)


def interval(site: str, slot: int, start: float, end: float | None = None) -> Interval:
    return Interval(site, f"web--{slot}", start, end, token=slot + 1)


def test_the_horizontal_checker_wants_every_slot_running_and_spread_at_the_end() -> None:
    sc = load_scenario(LIBRARY / "horizontal-5-over-6.toml")
    spread = {f"web--{i}": [interval(SITES[i], i, 0.0)] for i in range(5)}
    assert check_horizontal(sc, spread, 100.0) == []

    lost = {**spread, "web--1": [interval("s2", 1, 0.0, 50.0)]}
    [v] = check_horizontal(sc, lost, 100.0)
    assert v.checker == "horizontal" and "1 of 5 replicas not running" in v.message

    crowded = {**spread, "web--1": [interval("s2", 1, 0.0, 50.0), interval("s3", 1, 51.0)]}
    [v] = check_horizontal(sc, crowded, 100.0)
    assert "beyond max_skew 1" in v.message and "s3: 2" in v.message


HEAD = """
name = "t"
sites = ["a", "b"]
[[workloads]]
primary = "a"
standbys = ["b"]
"""


@pytest.mark.parametrize(
    ("extra", "field", "reason"),
    [
        ('name = "web--2"\nreplicas = 2', "workloads[0].replicas", "slots of horizontal"),
        ('name = "web"\nreplicas = 2\nmax_unavailable = 0', "workloads[0].replicas", ">= 1"),
    ],
)
def test_a_bad_horizontal_workload_is_refused_naming_the_field(
    extra: str, field: str, reason: str
) -> None:
    with pytest.raises(ScenarioError) as e:
        parse_scenario(HEAD + extra)
    assert e.value.field == field and reason in e.value.reason
