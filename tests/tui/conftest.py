"""Fixtures of the TUI tests: a recorded mesh (deterministic) and a real local mesh."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.workloads import WORKLOAD_CMD

from harmony.config import FailoverTopologyConfig, ProcessDriverConfig, WorkloadConfig
from harmony.sim.launch import LocalMesh
from harmony.sim.scenario import SIM_TIMINGS
from harmony.tui.recording import Recording, load

DATA = Path(__file__).parent / "data"


@pytest.fixture
def recording() -> Recording:
    """Three sites recorded twice: all alive, then 15 s after site-a was killed."""
    return load(DATA / "failover.json")


@pytest.fixture(scope="module")
def live_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    """Three real agents (embedded nats-servers) running one workload per strategy."""
    mesh = LocalMesh(
        tmp_path_factory.mktemp("tui-mesh"),
        mesh="tui",
        sites=("a", "b", "c"),
        timings=SIM_TIMINGS,
        workloads=[
            WorkloadConfig(
                name="ledger",
                strategy="absolute-consistency",
                driver=ProcessDriverConfig(command=WORKLOAD_CMD, restart="never"),
                topology=FailoverTopologyConfig(primary="a", standbys=["b", "c"]),
            ),
            WorkloadConfig(
                name="inference",
                strategy="split-brain-allowed",
                driver=ProcessDriverConfig(command=WORKLOAD_CMD, restart="never"),
                topology=FailoverTopologyConfig(primary="b", standbys=["c", "a"]),
            ),
        ],
    )
    try:
        mesh.start(timeout=90)
        yield mesh
    finally:
        mesh.stop()
