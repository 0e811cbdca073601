"""Library scenarios of the boundaries of absolute-consistency, run on real processes and
judged from ground truth (the copies' own records and the process table).

Each of them produced two active copies on the code before issue 8 (see scenarios/README.md);
here they must pass, with ground truth behind the verdict, and leave nothing behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console
from support.scenarios import LIBRARY, assert_nothing_left, since_first_fault, why

from harmony.sim.runner import run_scenario
from harmony.sim.scenario_file import load_scenario

pytestmark = pytest.mark.mesh


@pytest.mark.parametrize(
    "name",
    [
        "agent-kill-grandchild",  # a backgrounded grandchild of a SIGKILLed agent
        "stop-hook-fails-during-move",  # a stop hook exiting 1 is not a stopped copy
        "agent-and-tether-frozen",  # only the copy's own deadline check is left
        "whole-site-frozen",  # the residual risk: bounded, and no stale write
    ],
)
def test_boundary_scenario_passes_on_ground_truth(name: str, tmp_path: Path) -> None:
    scenario = load_scenario(LIBRARY / f"{name}.toml")
    workdir = tmp_path / "run"
    result = run_scenario(scenario, workdir, console=Console(quiet=True), live=False)
    assert_nothing_left(workdir)
    assert result.ok, why(result)
    assert result.sources == {"ledger": "scans + records"}, result.sources
    assert result.intervals is not None
    active = since_first_fault(result, "ledger")
    assert len(active) >= 2, f"no failover happened: {result.intervals['ledger']}"
    for note in result.residuals:  # only ever the documented one
        assert "was frozen" in note.message and "without acting" in note.message
