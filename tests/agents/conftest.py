from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harmony.config import FailoverTopologyConfig, ProcessDriverConfig, Timings, WorkloadConfig
from harmony.mesh.connection import MeshConnection
from harmony.sim.launch import LocalMesh

FAST = Timings(heartbeat_interval=0.2, suspect_after=1.5, silent_after=2.5, ask_timeout=3.0)


def sleeper(name: str, primary: str, standbys: list[str]) -> WorkloadConfig:
    return WorkloadConfig(
        name=name,
        driver=ProcessDriverConfig(command=["sleep", "600"]),
        topology=FailoverTopologyConfig(primary=primary, standbys=standbys),
        strategy="split-brain-allowed",
    )


@pytest.fixture(scope="module")
def mesh3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    """Three real agents, each with its embedded nats-server, clustered over loopback."""
    mesh = LocalMesh(
        Path(tmp_path_factory.mktemp("mesh3")),
        mesh="t3",
        sites=("a", "b", "c"),
        timings=FAST,
        workloads=[sleeper("w", "a", ["b", "c"])],
    )
    try:
        mesh.start(timeout=60)
        yield mesh
    finally:
        mesh.stop()
    # Secure by default: what the agents and the tests' operator did must all be allowed.
    assert mesh.identity is not None
    assert mesh.permission_violations() == []


@pytest.fixture
def conn(mesh3: LocalMesh) -> Iterator[MeshConnection]:
    c = mesh3.connect("test-client")
    try:
        c.wait_connected(10)
        yield c
    finally:
        c.close()
