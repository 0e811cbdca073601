"""Real nats-server processes on free loopback ports, for the conftest fixtures.

`NatsServers` keeps every server a test started and stops them all at teardown, also when
the test or the start-up failed. A free port can be taken by someone else between
`free_ports` and the server's bind: a start that lost that race is retried on new ports.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harmony.mesh.ports import free_ports
from harmony.mesh.server import (
    EmbeddedServer,
    ServerSpec,
    ServerStartError,
    wait_jetstream_ready,
)

PORT_RACE_ATTEMPTS = 3


@dataclass
class Node:
    """One nats-server started by a fixture."""

    spec: ServerSpec
    server: EmbeddedServer
    events: list[tuple[str, str]] = field(default_factory=list)
    _events_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def client_url(self) -> str:
        return self.spec.client_url

    @property
    def http_url(self) -> str:
        return self.spec.http_url

    def record(self, kind: str, detail: str) -> None:
        with self._events_lock:
            self.events.append((kind, detail))

    def event_kinds(self) -> list[str]:
        with self._events_lock:
            return [kind for kind, _ in self.events]


def port_race(e: ServerStartError) -> bool:
    """A free port taken by someone else between `free_ports` and the server's bind."""
    return "address already in use" in e.log_tail.lower()


class NatsServers:
    """Every server a test started, stopped at teardown (`stop_all`) in reverse order."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: list[Node] = []
        self.counter = 0

    def node(self, spec: ServerSpec, supervise: bool) -> Node:
        node = Node(spec=spec, server=EmbeddedServer(spec, supervise=supervise))
        node.server.on_event = node.record
        self.nodes.append(node)
        return node

    def store_dir(self, name: str) -> Path:
        self.counter += 1
        return self.root / f"{self.counter:02d}-{name}"

    def stop_all(self) -> None:
        errors = []
        for node in reversed(self.nodes):
            try:
                node.server.stop(grace=3.0)
            except Exception as e:  # keep stopping the others
                errors.append(f"{node.name}: {e!r}")
        if errors:
            pytest.fail(f"could not stop nats-server(s): {errors}")

    def start_server(self, name: str = "solo", supervise: bool = True, **spec_fields: Any) -> Node:
        """A started standalone JetStream server on free loopback ports."""
        for attempt in range(PORT_RACE_ATTEMPTS):
            client, cluster, http = free_ports(3)
            spec = ServerSpec(
                name=name,
                client_port=client,
                cluster_port=cluster,
                http_port=http,
                store_dir=self.store_dir(name),
                **spec_fields,
            )
            node = self.node(spec, supervise)
            try:
                node.server.start(timeout=20)
            except ServerStartError as e:
                if port_race(e) and attempt + 1 < PORT_RACE_ATTEMPTS:
                    continue
                raise
            return node
        raise AssertionError("unreachable")

    def start_cluster(
        self, n: int = 3, name: str = "mesh", supervise: bool = True, ready_timeout: float = 30.0
    ) -> list[Node]:
        """n servers routed to each other, returned once the cluster has a JetStream meta
        leader and an R(min(n, 3)) KV bucket could be created, written by CAS and deleted."""
        for attempt in range(PORT_RACE_ATTEMPTS):
            ports = free_ports(3 * n)
            specs = [
                ServerSpec(
                    name=f"n{i}",
                    client_port=ports[3 * i],
                    cluster_port=ports[3 * i + 1],
                    http_port=ports[3 * i + 2],
                    cluster_name=name,
                    store_dir=self.store_dir(f"n{i}"),
                )
                for i in range(n)
            ]
            routes = [s.route_url for s in specs]
            nodes = [self.node(dataclasses.replace(s, routes=routes), supervise) for s in specs]
            try:
                for node in nodes:
                    node.server.start(timeout=20)
            except ServerStartError as e:
                for node in nodes:
                    node.server.stop(grace=1.0)
                if port_race(e) and attempt + 1 < PORT_RACE_ATTEMPTS:
                    continue
                raise
            wait_jetstream_ready(
                [node.http_url for node in nodes],
                client_urls=[node.client_url for node in nodes],
                replicas=min(n, 3),
                timeout=ready_timeout,
            )
            return nodes
        raise AssertionError("unreachable")
