"""Fixtures every area uses: real nats-server processes and a NATS container.

Helpers live in the `support` package (tests/support/__init__.py lists its modules), e.g.
``from support.waiting import wait_until``.

Fixtures:

* `make_nats_server(name="solo", supervise=True, **spec_fields) -> Node`: a standalone
  JetStream server on free ports, data under ``tmp_path``.
* `nats_container`: client URL of nats-server in a Docker container (testcontainers).
* `make_nats_cluster` and `nats_cluster`: in tests/mesh/conftest.py.

Every process a fixture starts is stopped at teardown, also when the test or the start-up
failed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.containers import running_nats_container
from support.nats_servers import NatsServers, Node

from harmony.mesh.ports import RANGE_ENV, default_range


def pytest_configure(config: pytest.Config) -> None:
    """Each xdist worker chooses ports from a slice of its own (subprocesses inherit it):
    two workers choosing from one range collided, a server of one test binding a port
    another test's mesh had chosen a moment before."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    whole = default_range()
    if count < 2 or not worker.startswith("gw") or RANGE_ENV in os.environ or whole is None:
        return
    k = int(worker.removeprefix("gw"))
    size = (whole[1] - whole[0]) // count
    os.environ[RANGE_ENV] = f"{whole[0] + k * size}-{whole[0] + (k + 1) * size}"


@pytest.fixture
def _nats_servers(tmp_path: Path) -> Iterator[NatsServers]:
    servers = NatsServers(tmp_path / "nats")
    try:
        yield servers
    finally:
        servers.stop_all()


@pytest.fixture
def make_nats_server(_nats_servers: NatsServers) -> Callable[..., Node]:
    """Factory: ``make_nats_server(name="solo", supervise=True, **spec_fields) -> Node``.

    A started standalone JetStream server on free loopback ports.
    """
    return _nats_servers.start_server


@pytest.fixture
def nats_container(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """nats-server (JetStream) in a container; yields ``nats://host:mapped_port``."""
    with running_nats_container(monkeypatch) as url:
        yield url
