"""The library scenario geo-only-eu-lost on real processes, judged from ground truth: with
the only EU site killed nothing runs on the US sites (the `geo` checker and the desired
state agree), and both workloads come back on the EU site."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from harmony.sim.launch import pids_mentioning
from harmony.sim.runner import run_scenario
from harmony.sim.scenario_file import load_scenario

pytestmark = pytest.mark.mesh

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios"


def test_geo_only_eu_lost_passes_on_ground_truth(tmp_path: Path) -> None:
    scenario = load_scenario(LIBRARY / "geo-only-eu-lost.toml")
    workdir = tmp_path / "run"
    result = run_scenario(scenario, workdir, console=Console(quiet=True), live=False)
    assert pids_mentioning(str(workdir)) == []
    why = [f"{v.checker}: {v.message} {v.explain}" for v in result.violations]
    assert result.ok, (why, result.error, result.leftovers)
    assert result.intervals is not None
    for name in ("ledger", "cache"):
        sites = {i.site for i in result.intervals[name]}
        assert sites == {"eu"}, (name, result.intervals[name])
        assert len(result.intervals[name]) >= 2, f"{name} did not run again after the loss"
