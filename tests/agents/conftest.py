"""Fixtures of the agent tests: a module-wide mesh of three real agents, a connection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.meshes import FAST_HEARTBEATS
from support.workloads import sleeper

from harmony.mesh.connection import MeshConnection
from harmony.sim.launch import LocalMesh


@pytest.fixture(scope="module")
def mesh3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    """Three real agents, each with its embedded nats-server, clustered over loopback."""
    mesh = LocalMesh(
        Path(tmp_path_factory.mktemp("mesh3")),
        mesh="t3",
        sites=("a", "b", "c"),
        timings=FAST_HEARTBEATS,
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
