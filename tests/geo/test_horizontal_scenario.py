"""The library scenario horizontal-5-over-6 on real processes, judged from ground truth:
five absolute-consistency slots over six sites, two sites killed and restarted; never two
copies of a slot, none outside the constraints, five running spread at the end."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from support.scenarios import run_library

pytestmark = pytest.mark.mesh


@pytest.mark.timeout(480)  # six sites, two killed and restarted, a rebalance: ~2-3 minutes
def test_horizontal_5_over_6_passes_on_ground_truth(tmp_path: Path) -> None:
    result = run_library("horizontal-5-over-6", tmp_path)
    assert result.intervals is not None
    slots = [f"web--{i}" for i in range(5)]
    # each slot ran; the slots of the two killed sites ran on another site afterwards
    assert all(result.intervals[s] for s in slots), result.intervals
    moved = [s for s in slots if len({i.site for i in result.intervals[s]}) > 1]
    assert len(moved) >= 2, result.intervals
    # at the end one copy per slot, at most one per site (the checker says so too)
    last = Counter(max(result.intervals[s], key=lambda i: i.start).site for s in slots)
    assert max(last.values()) == 1, last
