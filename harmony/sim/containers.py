"""`--backend containers`: every nats-server in a Docker container, partitions by networks.

Agents still run as local processes, in external NATS mode, each connected to its own
site's container through a fixed published port. Routes between servers run over one
Docker network per pair of sites, where each server has the alias ``n-<site>``; cutting a
pair disconnects one of its servers from that pair's network (the route's name stops
resolving and its address stops answering), healing connects it again. This gives any
symmetric grouping, bridges included. A one-way cut, a delay or a drop needs the fault
proxy (there is no netem here): such scenarios are refused up front with exit code 2.

Killing a server kills its container; like an embedded server's agent, the backend starts
it again after a short back-off. Containers are labelled with the work directory so that a
stray one can be found and removed. The image is built locally by `docker import` of the
venv's static nats-server binary (no registry is needed); Ryuk is disabled.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harmony.config import ROSTER_FILE, NatsConfig
from harmony.mesh.conf_text import user_lines
from harmony.mesh.ports import free_ports
from harmony.mesh.server import nats_server_binary
from harmony.mesh.server_conf import ACCOUNT
from harmony.security.permissions import UserPermissions, lease_scope, mesh_users
from harmony.security.roster import load_roster
from harmony.sim.backend import ProcessBackend
from harmony.sim.launch import LaunchError, LocalMesh
from harmony.sim.scenario import Delay, Drop, Freeze, Partition, Scenario, Step
from harmony.strategies.registry import uses_lease

LABEL = "harmony-sim"


def unavailable_reason(scenario: Scenario, steps: Sequence[Step] | None) -> str:
    """ "" when this backend can run the scenario, else why not (nothing is started)."""
    if scenario.data_dir_size:
        return "data_dir_size (a tmpfs per site) needs --backend processes"
    for step in steps if steps is not None else scenario.steps:
        match step:
            case Partition(one_way=True):
                return "a one-way partition needs the fault proxy (--backend processes)"
            case Delay() | Drop():
                return f"{type(step).__name__.lower()} needs the fault proxy (--backend processes)"
            case Freeze(what="site"):
                return "freezing a whole site needs its nats-server as a local process"
    try:
        import docker

        client = docker.from_env(timeout=10)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as e:
        return f"no Docker engine answers: {e}"
    return ""


def build_image(tag: str | None = None) -> str:
    """A local image whose entrypoint is the venv's nats-server (built once per version)."""
    import docker
    import docker.errors

    binary = nats_server_binary()
    version = (
        subprocess.run(
            [str(binary), "--version"], check=True, capture_output=True, text=True, timeout=10
        )
        .stdout.strip()
        .rsplit("v", 1)[-1]
    )
    tag = tag or f"harmony-nats:{version}"
    repository, _, label = tag.rpartition(":")
    client = docker.from_env(timeout=120)
    try:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.get(tag)
            return tag
        with tempfile.TemporaryDirectory(prefix="harmony-nats-image-") as tmp:
            tarball = Path(tmp) / "rootfs.tar"
            with tarfile.open(tarball, "w") as tar:
                info = tar.gettarinfo(str(binary), arcname="nats-server")
                info.mode, info.uid, info.gid = 0o755, 0, 0
                with open(binary, "rb") as f:
                    tar.addfile(info, f)
                for d in ("tmp", "data"):
                    entry = tarfile.TarInfo(d)
                    entry.type, entry.mode = tarfile.DIRTYPE, 0o1777
                    tar.addfile(entry, io.BytesIO())
            client.api.import_image_from_file(
                str(tarball),
                repository=repository,
                tag=label,
                changes=['ENTRYPOINT ["/nats-server"]', "EXPOSE 4222 6222 8222"],
            )
        client.images.get(tag)
        return tag
    finally:
        client.close()


MATERIAL = "/etc/harmony"
"""Where a container sees its site's directory of the mesh (mounted read-only)."""


def server_conf(
    site: str, mesh: str, others: Sequence[str], users: Sequence[UserPermissions] | None = None
) -> str:
    """A container's nats-server conf; with `users` (a secure mesh), TLS on both ports
    (routes: the mesh CA; each certificate names ``n-<site>``) and the roster's nkey users.
    Monitoring listens on every interface of the container, but its port is published on
    the host's loopback only."""
    routes = "\n".join(f'    "nats-route://n-{o}:6222"' for o in others)

    def tls(indent: str, ca: str) -> str:
        return (
            f'{indent}tls {{\n{indent}  cert_file: "{MATERIAL}/cert.pem"\n'
            f'{indent}  key_file: "{MATERIAL}/key.pem"\n{indent}  ca_file: "{MATERIAL}/{ca}"\n'
            f"{indent}  verify: true\n{indent}  timeout: 3\n{indent}}}\n"
        )

    secure = ""
    route_tls = ""
    if users is not None:
        lines = [f"accounts {{\n  {ACCOUNT} {{\n    jetstream: enabled\n    users = ["]
        lines += ["  " + line for u in users for line in user_lines(u)]
        lines += ["    ]\n  }\n}\n"]
        secure = tls("", "clients-ca.pem") + "\n".join(lines)
        route_tls = tls("  ", "ca.pem")
    return (
        f'server_name: "{site}"\nlisten: "0.0.0.0:4222"\nhttp: "0.0.0.0:8222"\n'
        + secure
        + 'jetstream {\n  store_dir: "/data"\n  sync_interval: always\n}\n'
        f'cluster {{\n  name: "{mesh}"\n  listen: "0.0.0.0:6222"\n'
        + route_tls
        + "  # gossip must never open a route around the per-pair networks\n"
        f'  advertise: "127.0.0.1:1"\n  routes: [\n{routes}\n  ]\n}}\n'
    )


class _ExternalMesh(LocalMesh):
    """LocalMesh whose agents use external NATS: the containers' published client ports."""

    ports: dict[str, tuple[int, int]]

    note = " (NATS in a container)"

    def nats_configs(self, names: Sequence[str]) -> dict[str, NatsConfig]:
        """External NATS: each agent uses its own site's container's published port."""
        return {
            s: NatsConfig(
                mode="external",
                servers=[f"nats://127.0.0.1:{self.ports[s][0]}"],
                kv_replicas=min(3, len(names)),
            )
            for s in names
        }

    def client_urls(self, sites: Any = None) -> list[str]:
        chosen = list(sites) if sites is not None else list(self.configs)
        return [f"nats://127.0.0.1:{self.ports[s][0]}" for s in chosen]

    def server_pids(self, site: str) -> list[int]:
        return []

    def cert_hosts(self, site: str) -> list[str]:
        return [f"n-{site}"]  # the route host on the per-pair networks

    def users(self, site: str) -> list[UserPermissions] | None:
        """The nkey users of `site`'s server (None: an insecure mesh)."""
        if self.identity is None:
            return None
        scope = lease_scope(
            (w.name, [w.topology.primary, *w.topology.standbys])
            for w in self.workloads_for(site)
            if uses_lease(w.strategy)
        )
        roster = load_roster(self.mesh_dir / ROSTER_FILE)
        return mesh_users(roster, scope)


class ContainerBackend(ProcessBackend):
    """Agents as local processes (external NATS), servers in containers, Docker networks."""

    def __init__(
        self, scenario: Scenario, workdir: Path, log_level: str = "info", truth: Path | None = None
    ) -> None:
        import docker

        super().__init__(scenario, workdir, log_level, truth)
        self.names = list(scenario.all_sites)
        self.docker = docker.from_env(timeout=60)
        self.tag = f"{os.getpid()}-{int(time.monotonic() * 1000) % 100000}"
        self.ext = _ExternalMesh(
            workdir,
            mesh=scenario.mesh_name,
            sites=list(scenario.sites),
            witnesses=list(scenario.witnesses),
            site_workloads=self.mesh.site_workloads,
            timings=self.mesh.timings,
            site_timings=self.mesh.site_timings,
            log_level=log_level,
        )
        self.mesh = self.ext
        ports = free_ports(2 * len(self.names))
        self.ext.ports = {s: (ports[2 * i], ports[2 * i + 1]) for i, s in enumerate(self.names)}
        self.containers: dict[str, Any] = {}
        self.networks: dict[frozenset[str], Any] = {}
        self.cut_pairs: set[frozenset[str]] = set()
        self._lock = threading.Lock()
        self._restarts: list[threading.Timer] = []

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, timeout: float) -> None:
        from testcontainers.core.config import testcontainers_config

        os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
        testcontainers_config.ryuk_disabled = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        image = build_image()
        labels = {LABEL: str(self.workdir)}
        for a in self.names:
            for b in self.names:
                if a < b:
                    self.networks[frozenset((a, b))] = self.docker.networks.create(
                        f"hsim-{self.tag}-{a}-{b}", driver="bridge", labels=labels
                    )
        if not self.ext.procs:  # the keys exist before the servers that use them
            self.ext.write_configs()
        for s in self.names:
            c = self._container(image, s, labels)
            c.start()
            self.containers[s] = c.get_wrapped_container()
            for pair, net in self.networks.items():
                if s in pair:
                    net.connect(self.containers[s], aliases=[f"n-{s}"])
        self._wait_servers(timeout)
        self.prepare()
        self.mesh.start(self.normal_sites(), timeout=timeout)

    def _container(self, image: str, site: str, labels: dict[str, str]) -> Any:
        from testcontainers.core.container import DockerContainer

        conf = self.workdir / f"{site}-nats.conf"
        others = [o for o in self.names if o != site]
        conf.write_text(server_conf(site, self.mesh.mesh, others, self.ext.users(site)))
        client, http = self.ext.ports[site]
        c = (
            DockerContainer(image)
            .with_command("-c /etc/nats.conf")
            .with_volume_mapping(str(conf), "/etc/nats.conf", "ro")
            .with_kwargs(labels=labels)
        )
        # Published on the host's loopback only (monitoring is unauthenticated): docker-py
        # takes (ip, port), testcontainers' with_bind_ports only a port.
        ports: dict[str, Any] = c.ports
        ports.update({"4222": ("127.0.0.1", client), "8222": ("127.0.0.1", http)})
        if self.ext.identity is not None:
            c = c.with_volume_mapping(str(self.ext.mesh_dir / "sites" / site), MATERIAL, "ro")
        return c

    def _wait_servers(self, timeout: float) -> None:
        from harmony.mesh.server import wait_jetstream_ready

        secure = self.ext.identity is not None  # no one may make a test bucket there
        wait_jetstream_ready(
            [self.http_url(s) for s in self.names],
            client_urls=[] if secure else [self.client_url(s) for s in self.names],
            replicas=min(3, len(self.names)),
            timeout=timeout,
        )

    def stop(self) -> None:
        for t in self._restarts:
            t.cancel()
        try:
            super().stop()  # agents first: they drain through their servers
        finally:
            for c in self.containers.values():
                with contextlib.suppress(Exception):
                    c.remove(force=True)
            for net in self.networks.values():
                with contextlib.suppress(Exception):
                    net.remove()
            self.docker.close()

    def client_url(self, site: str) -> str:
        return f"nats://127.0.0.1:{self.ext.ports[site][0]}"

    def http_url(self, site: str) -> str:
        return f"http://127.0.0.1:{self.ext.ports[site][1]}"

    def leftovers(self) -> list[str]:
        stray = [f"container {c.name}" for c in self._labelled("containers")]
        stray += [f"network {n.name}" for n in self._labelled("networks")]
        return super().leftovers() + stray

    def _labelled(self, kind: str) -> list[Any]:
        import docker

        client = docker.from_env(timeout=30)
        try:
            listing = getattr(client, kind).list(filters={"label": f"{LABEL}={self.workdir}"})
            return list(listing)
        except Exception:
            return []
        finally:
            client.close()

    # -- links ---------------------------------------------------------------------------
    def set_cuts(self, pairs: set[tuple[str, str]]) -> None:
        wanted = {frozenset(p) for p in pairs}
        with self._lock:
            for pair in sorted(wanted - self.cut_pairs, key=sorted):
                first = sorted(pair)[0]
                with contextlib.suppress(Exception):
                    self.networks[pair].disconnect(self.containers[first], force=True)
            for pair in sorted(self.cut_pairs - wanted, key=sorted):
                first = sorted(pair)[0]
                with contextlib.suppress(Exception):
                    self.networks[pair].connect(self.containers[first], aliases=[f"n-{first}"])
            self.cut_pairs = wanted

    def set_delay(self, pairs: set[tuple[str, str]], seconds: float) -> None:
        if seconds:
            raise LaunchError("the containers backend cannot delay links")

    def set_drop(self, pairs: set[tuple[str, str]], probability: float) -> None:
        if probability:
            raise LaunchError("the containers backend cannot drop on links")

    def heal_all(self) -> None:
        self.set_cuts(set())

    # -- servers -------------------------------------------------------------------------
    def kill(self, site: str, what: str, sig: int) -> None:
        if what in ("agent", "both"):
            self.paused.discard(site)
            self.mesh.kill(site, sig, with_server=False)
        if what in ("server", "both"):
            c = self.containers[site]
            c.kill(signal=signal.Signals(sig).name)
            if what == "server":  # its "agent" restarts it, as an embedded server would be
                t = threading.Timer(1.0, self._start_container, (site,))
                t.daemon = True
                self._restarts.append(t)
                t.start()

    def _start_container(self, site: str) -> None:
        with contextlib.suppress(Exception):
            self.containers[site].start()

    def restart(self, site: str, timeout: float) -> None:
        c = self.containers[site]
        c.reload()
        if c.status != "running":
            c.start()
        self.mesh.start([site], timeout=timeout, wait_formed=False)
