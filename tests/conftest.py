"""Shared fixtures and helpers: real nats-server processes, a NATS container, waiting.

Helpers (import them with ``from conftest import wait_until, run_async``):

* `wait_until(predicate, timeout, interval=0.05, message=...)` polls a condition with a
  deadline and fails the test with a clear message. Never sleep and hope.
* `run_async(coro, timeout=30)` runs a coroutine on a fresh event loop with a deadline
  (the tests do not use pytest-asyncio).

Fixtures:

* `make_nats_server(name="solo", supervise=True, **spec_fields) -> Node`: a standalone
  JetStream server on free ports, data under ``tmp_path``.
* `make_nats_cluster(n=3, name="mesh", supervise=True, ready_timeout=30) -> list[Node]`:
  n servers routed to each other, ready for R3 KV buckets.
* `nats_cluster`: ``make_nats_cluster(3)``.
* `nats_container`: client URL of nats-server in a Docker container (testcontainers).

Every process a fixture starts is stopped at teardown, also when the test or the start-up
failed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:  # `containers` lives next to this file
    sys.path.insert(0, _TESTS_DIR)

from containers import build_nats_image, docker_unavailable_reason  # noqa: E402

from harmony.mesh.ports import free_ports  # noqa: E402
from harmony.mesh.server import (  # noqa: E402
    EmbeddedServer,
    ServerSpec,
    ServerStartError,
    wait_jetstream_ready,
)

T = TypeVar("T")

# --- helpers --------------------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], Any],
    timeout: float,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition not met",
) -> Any:
    """Poll `predicate` until it returns a truthy value (returned) or `timeout` s pass.

    An exception raised by the predicate counts as "not yet"; the last one is shown if the
    deadline passes. `message` may be a callable, evaluated only on failure (for state dumps).
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
        except Exception as e:
            last_error = e
        else:
            if result:
                return result
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            pytest.fail(f"timed out after {timeout:g} s: {text}{detail}")
        time.sleep(interval)


def run_async(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run `coro` on a new event loop; fail the test if it takes longer than `timeout` s."""

    async def bounded() -> T:
        try:
            return await asyncio.wait_for(coro, timeout)
        except TimeoutError:
            pytest.fail(f"coroutine did not finish within {timeout:g} s")

    return asyncio.run(bounded())


def tcp_port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


# --- real nats-server processes -------------------------------------------------------------


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


_PORT_RACE_ATTEMPTS = 3


def _port_race(e: ServerStartError) -> bool:
    """A free port taken by someone else between `free_ports` and the server's bind."""
    return "address already in use" in e.log_tail.lower()


class _Servers:
    """Every server a test started, stopped at teardown in reverse order."""

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


@pytest.fixture
def _nats_servers(tmp_path: Path) -> Iterator[_Servers]:
    servers = _Servers(tmp_path / "nats")
    try:
        yield servers
    finally:
        servers.stop_all()


@pytest.fixture
def make_nats_server(_nats_servers: _Servers) -> Callable[..., Node]:
    """Factory: ``make_nats_server(name="solo", supervise=True, **spec_fields) -> Node``.

    A started standalone JetStream server on free loopback ports.
    """

    def make(name: str = "solo", supervise: bool = True, **spec_fields: Any) -> Node:
        for attempt in range(_PORT_RACE_ATTEMPTS):
            client, cluster, http = free_ports(3)
            spec = ServerSpec(
                name=name,
                client_port=client,
                cluster_port=cluster,
                http_port=http,
                store_dir=_nats_servers.store_dir(name),
                **spec_fields,
            )
            node = _nats_servers.node(spec, supervise)
            try:
                node.server.start(timeout=20)
            except ServerStartError as e:
                if _port_race(e) and attempt + 1 < _PORT_RACE_ATTEMPTS:
                    continue
                raise
            return node
        raise AssertionError("unreachable")

    return make


@pytest.fixture
def make_nats_cluster(_nats_servers: _Servers) -> Callable[..., list[Node]]:
    """Factory: ``make_nats_cluster(n=3, name="mesh", supervise=True, ready_timeout=30)``.

    Starts n servers on free loopback ports, each routed to all the others, and returns once
    the cluster has a JetStream meta leader and an R(min(n, 3)) KV bucket could be created,
    written by CAS and deleted.
    """

    def make(
        n: int = 3, name: str = "mesh", supervise: bool = True, ready_timeout: float = 30.0
    ) -> list[Node]:
        for attempt in range(_PORT_RACE_ATTEMPTS):
            ports = free_ports(3 * n)
            specs = [
                ServerSpec(
                    name=f"n{i}",
                    client_port=ports[3 * i],
                    cluster_port=ports[3 * i + 1],
                    http_port=ports[3 * i + 2],
                    cluster_name=name,
                    store_dir=_nats_servers.store_dir(f"n{i}"),
                )
                for i in range(n)
            ]
            routes = [s.route_url for s in specs]
            nodes = [
                _nats_servers.node(dataclasses.replace(s, routes=routes), supervise) for s in specs
            ]
            try:
                for node in nodes:
                    node.server.start(timeout=20)
            except ServerStartError as e:
                for node in nodes:
                    node.server.stop(grace=1.0)
                if _port_race(e) and attempt + 1 < _PORT_RACE_ATTEMPTS:
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

    return make


@pytest.fixture
def nats_cluster(make_nats_cluster: Callable[..., list[Node]]) -> list[Node]:
    """Three routed nats-servers, ready for R3 KV buckets."""
    return make_nats_cluster(3)


# --- Docker ---------------------------------------------------------------------------------


def _require_docker() -> None:
    reason = docker_unavailable_reason()
    if not reason:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but Docker is unavailable, and CI must run Docker tests: {reason}")
    pytest.skip(f"Docker is unavailable ({reason}); set up an engine or run .ci/run")


@pytest.fixture
def nats_container(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """nats-server (JetStream) in a container; yields ``nats://host:mapped_port``."""
    _require_docker()
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
    from testcontainers.core.config import testcontainers_config
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import HttpWaitStrategy

    # The config reads the variable once and caches it; make sure no Ryuk (no registry).
    monkeypatch.setattr(testcontainers_config, "ryuk_disabled", True)

    image = build_nats_image()
    container = (
        DockerContainer(image)
        .with_command("-js -p 4222 -m 8222")
        .with_exposed_ports(4222, 8222)
        .waiting_for(
            HttpWaitStrategy(8222, "/healthz").with_startup_timeout(30).with_poll_interval(0.1)
        )
    )
    try:
        container.start()
        host = container.get_container_host_ip()
        port = int(container.get_exposed_port(4222))
        wait_until(
            lambda: tcp_port_open(host, port),
            timeout=15,
            message=lambda: (
                f"container client port {host}:{port} never accepted; logs: {container.get_logs()}"
            ),
        )
        yield f"nats://{host}:{port}"
    finally:
        container.stop()
