"""Fixtures of the mesh tests: clusters of real nats-servers (the root conftest's
`_nats_servers` stops them)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from support.nats_servers import NatsServers, Node


@pytest.fixture
def make_nats_cluster(_nats_servers: NatsServers) -> Callable[..., list[Node]]:
    """Factory: ``make_nats_cluster(n=3, name="mesh", supervise=True, ready_timeout=30)``.

    Starts n servers on free loopback ports, each routed to all the others, and returns once
    the cluster has a JetStream meta leader and an R(min(n, 3)) KV bucket could be created,
    written by CAS and deleted.
    """
    return _nats_servers.start_cluster


@pytest.fixture
def nats_cluster(make_nats_cluster: Callable[..., list[Node]]) -> list[Node]:
    """Three routed nats-servers, ready for R3 KV buckets."""
    return make_nats_cluster(3)
