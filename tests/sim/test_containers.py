"""`--backend containers`: nats-servers in Docker, partitioned with Docker networks.

Under CI=true this must run (a missing Docker engine fails the test); elsewhere it is
skipped with the reason when no engine answers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console
from support.containers import require_docker

from harmony.sim.containers import LABEL
from harmony.sim.runner import run_scenario
from harmony.sim.scenario_file import load_scenario

pytestmark = [pytest.mark.mesh, pytest.mark.docker]

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios"


def test_minority_partition_through_docker_networks(tmp_path: Path) -> None:
    require_docker()
    import docker

    scenario = load_scenario(LIBRARY / "minority-partition.toml")
    workdir = (tmp_path / "run").resolve()
    result = run_scenario(
        scenario, workdir, backend="containers", console=Console(quiet=True), live=False
    )
    assert result.ok, (result.violations, result.error, result.leftovers)
    ledger_sites = [e.site for e in result.events if e.kind == "driver-running"]
    assert ledger_sites[0] == "a" and "b" in ledger_sites
    client = docker.from_env()
    try:
        label = {"label": f"{LABEL}={workdir}"}
        assert client.containers.list(all=True, filters=label) == []
        assert client.networks.list(filters=label) == []
    finally:
        client.close()
