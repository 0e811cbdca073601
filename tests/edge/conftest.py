"""Fixtures of the core-and-edge tests: 3 cores and 2 edges of real agents, the edges' leaf
links through the fault proxy, an absolute-consistency `ledger` on e1 with e2 standing by;
and a `Watcher` of that mesh."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.meshes import Watcher
from support.workloads import workload

from harmony.sim.launch import LocalMesh
from harmony.sim.scenario import SIM_TIMINGS

CORES = ("a", "b", "c")
EDGES = ("e1", "e2")


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[LocalMesh]:
    m = LocalMesh(
        tmp_path,
        mesh="ce",
        sites=(*CORES, *EDGES),
        cores=3,
        timings=SIM_TIMINGS,
        proxied=True,
        workloads=[workload("ledger", "absolute-consistency", "e1", ["e2"], tmp_path)],
    )
    try:
        m.start(timeout=90)
        yield m
    finally:
        m.stop()


@pytest.fixture
def watch(mesh: LocalMesh) -> Iterator[Watcher]:
    w = Watcher(mesh)
    yield w
    w.close()
