"""Scenario files with prices and cost workloads: what is refused, naming the field; the
library's cost scenario builds a cost topology and price hooks for its sites."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harmony.config import CostTopologyConfig
from harmony.sim.backend import workload_config
from harmony.sim.price_hooks import price_hook, write_price
from harmony.sim.scenario import SetPrice
from harmony.sim.scenario_file import ScenarioError, load_scenario, parse_scenario

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios"
HEAD = 'name = "t"\nsites = ["a", "b", "c"]\n[prices]\na = 1.0\nb = 2.0\n'
COST = '[[workloads]]\nname = "ledger"\ntopology = "cost"\nprimary = "a"\nstandbys = ["b", "c"]\n'


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (HEAD + COST + '[[steps]]\ndo = "set-price"\nsite = "c"\nprice = 1.0\n', "steps[0].site"),
        (HEAD + COST + '[[steps]]\ndo = "set-price"\nsite = "a"\nprice = -1\n', "steps[0].price"),
        (HEAD + "zz = 3.0\n" + COST, "prices.zz"),
        (HEAD + COST + "min_saving = -1\n", "workloads[0].min_saving"),
        (HEAD + COST + "hold = -5\n", "workloads[0].hold"),
        ("price_interval = 0\n" + HEAD + COST, "price_interval"),
    ],
)
def test_bad_prices_and_cost_workloads_are_refused_naming_the_field(text: str, field: str) -> None:
    with pytest.raises(ScenarioError) as e:
        parse_scenario(text)
    assert e.value.field == field, str(e.value)


def test_the_library_scenario_runs_a_cost_topology_with_a_price_hook_per_site(
    tmp_path: Path,
) -> None:
    sc = load_scenario(LIBRARY / "cost-price-change-in-partition.toml")
    assert sc.prices == {"a": 3.0, "b": 6.0, "c": 5.0}
    assert any(isinstance(s, SetPrice) for s in sc.steps)
    [w] = sc.workloads
    cfg = workload_config(w, tmp_path, "a")
    assert isinstance(cfg.topology, CostTopologyConfig)
    assert cfg.topology.sites == ["a", "b", "c"] and cfg.topology.hold == 3.0
    hook = price_hook(tmp_path, "a")
    write_price(tmp_path, "a", 2.5)
    assert os.access(hook, os.X_OK)
    out = subprocess.run([str(hook)], capture_output=True, text=True, timeout=10, check=True)
    assert out.stdout == "2.5\n"
