"""The library scenario geo-only-eu-lost on real processes, judged from ground truth: with
the only EU site killed nothing runs on the US sites (the `geo` checker and the desired
state agree), and both workloads come back on the EU site."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.scenarios import run_library

pytestmark = pytest.mark.mesh


def test_geo_only_eu_lost_passes_on_ground_truth(tmp_path: Path) -> None:
    result = run_library("geo-only-eu-lost", tmp_path)
    assert result.intervals is not None
    for name in ("ledger", "cache"):
        sites = {i.site for i in result.intervals[name]}
        assert sites == {"eu"}, (name, result.intervals[name])
        assert len(result.intervals[name]) >= 2, f"{name} did not run again after the loss"
