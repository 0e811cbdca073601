"""The simulator knows geo: scenario labels and constraints, the desired state they imply,
and the `geo` checker (no copy ran outside the constraints, from the history)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harmony.actors.journal import JournalEvent
from harmony.sim.checks import check_constraints, evaluate
from harmony.sim.history import Interval
from harmony.sim.scenario_file import ScenarioError, load_scenario, parse_scenario
from harmony.sim.world import World

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios"
HEAD = """
name = "t"
sites = ["eu", "us"]
[labels]
eu = { jurisdiction = "EU" }
us = { jurisdiction = "US" }
[[workloads]]
name = "ledger"
primary = "eu"
standbys = ["us"]
"""


def test_the_library_scenario_restricts_both_workloads_to_its_eu_site() -> None:
    sc = load_scenario(LIBRARY / "geo-only-eu-lost.toml")
    assert [w.eligible_sites(sc.labels) for w in sc.workloads] == [["eu"], ["eu"]]
    world = World(sc.all_sites, labels=sc.labels)
    assert world.expectations(sc.workloads)["ledger"] == {"eu,us1,us2": 1}
    world.down.add("eu")  # the only EU site is gone: the US side must run nothing
    assert world.expectations(sc.workloads) == {
        "ledger": {"us1,us2": 0, "(down)": 0},
        "cache": {"us1,us2": 0, "(down)": 0},
    }


def test_without_constraints_every_site_of_the_topology_is_eligible() -> None:
    sc = parse_scenario(HEAD)
    assert sc.workloads[0].eligible_sites(sc.labels) == ["eu", "us"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("constraints = ['jurisdiction is EU']", "workloads[0].constraints"),
        ('[labels.mars]\nk = "v"', "labels.mars"),
        ('[labels.us]\n"bad key" = "v"', "labels.us"),
    ],
)
def test_bad_constraints_and_labels_are_refused(tmp_path: Path, extra: str, field: str) -> None:
    text = HEAD.replace(
        '[labels]\neu = { jurisdiction = "EU" }\nus = { jurisdiction = "US" }\n', ""
    )
    f = tmp_path / "bad.toml"
    f.write_text(text + extra + '\n[[steps]]\ndo = "heal"\n')
    with pytest.raises(ScenarioError) as e:
        load_scenario(f)
    assert e.value.field == field, e.value


def interval(site: str, start: float, end: float | None = None) -> Interval:
    return Interval(site=site, workload="ledger", start=start, end=end, token=None)


def test_the_geo_checker_flags_every_copy_outside_the_constraints() -> None:
    found = check_constraints(
        [interval("eu", 1.0, 5.0), interval("us", 6.0, 7.0), interval("eu", 8.0)],
        "ledger",
        ["eu"],
    )
    assert [(v.checker, v.at) for v in found] == [("geo", 6.0)]
    assert "a copy ran on us, outside the workload's constraints (allowed: eu)" in found[0].message
    assert check_constraints([interval("eu", 1.0)], "ledger", ["eu"]) == []


def test_evaluate_runs_the_geo_checker_on_the_history() -> None:
    sc = parse_scenario(
        HEAD + "constraints = ['jurisdiction in [\"EU\"]']\n" + '[[steps]]\ndo = "heal"\n'
    )

    def ev(site: str, kind: str, mono: float) -> JournalEvent:
        return JournalEvent(
            site=site, workload="ledger", kind=kind, reason="r", mono=mono, wall=mono
        )

    history = [ev("us", "start", 1.0), ev("us", "driver-stopped", 2.0)]
    result = evaluate(history, sc, horizon=3.0)
    assert [v.checker for v in result.violations if v.checker == "geo"] == ["geo"]
