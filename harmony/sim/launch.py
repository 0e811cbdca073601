"""Launch a mesh of real sites on this machine: one agent process per site, each with its
embedded nats-server, routed to every other site's server.

Used by `harmony demo`, the tests and (later) the chaos simulations. Every process it starts
runs in its own process group and is stopped on exit, on failure and on Ctrl-C; as a last
resort `stop()` also kills any process whose command line names this mesh's work directory
(an embedded nats-server orphaned by a SIGKILLed agent, for instance).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harmony import procfs
from harmony.actors.drivers.containment import Containment, containment_id, scan_marked
from harmony.config import (
    ROSTER_FILE,
    MetricsConfig,
    NatsConfig,
    PriceConfig,
    SecurityConfig,
    SiteConfig,
    Supervision,
    Timings,
    WorkloadConfig,
)
from harmony.config.slots import expand
from harmony.mesh.ports import free_ports
from harmony.security.identity import Identity, load_identity
from harmony.security.material import init_mesh
from harmony.sim.proxy import FaultProxy
from harmony.sim.site_configs import core_edge_nats, loopback_nats, write_site_config

if TYPE_CHECKING:
    from harmony.mesh.connection import MeshConnection

OPERATOR_ID = "operator"
"""The identity LocalMesh's own tools (observer, launch, demo) connect as."""


class LaunchError(RuntimeError):
    pass


@dataclass
class SiteProcess:
    name: str
    config_path: Path
    log_path: Path
    ready_file: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def _ancestors() -> set[int]:
    """This process and its parents: a wrapper whose command line names the work
    directory (``timeout 300 harmony sim run --dir D``) is not a stray to kill."""
    out, pid = set(), os.getpid()
    while pid > 1 and pid not in out:
        out.add(pid)
        st = procfs.stat(pid)
        if st is None:
            break
        pid = st.ppid
    return out


def pids_mentioning(text: str) -> list[int]:
    """Pids of this machine's processes whose command line contains `text` (Linux /proc),
    leaving out this process and its ancestors."""
    mine = _ancestors()
    return [p for p in procfs.pids() or [] if p not in mine and text in procfs.cmdline(p)]


@dataclass
class LocalMesh:
    workdir: Path
    mesh: str = "demo"
    sites: Sequence[str] = ("a", "b", "c")
    witnesses: Sequence[str] = ()
    workloads: list[WorkloadConfig] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    site_workloads: dict[str, list[WorkloadConfig]] = field(default_factory=dict)
    """Per-site workload configs (e.g. a per-site records path), instead of `workloads`."""
    site_timings: dict[str, Timings] = field(default_factory=dict)
    """Per-site timings, instead of `timings` (sites that disagree)."""
    site_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    """Each site's labels (config ``labels``; geo constraints name them)."""
    site_prices: dict[str, PriceConfig] = field(default_factory=dict)
    """Each priced site's ``[price]`` (cost topologies read it)."""
    supervision: Supervision = field(default_factory=Supervision)
    log_level: str = "info"
    proxied: bool = False
    """Route every NATS route through a `FaultProxy` link, so tests can cut and heal them."""
    python: str = sys.executable
    cores: int = 0
    """A core-and-edge mesh: this many core sites (the witnesses, then the first sites),
    the other sites edges, leaf nodes of every core (through the proxy when `proxied`).
    0: every site is a core, routed to every other (as always)."""
    connect_timeout: float = 30.0
    """Each agent's `--connect-timeout`: how long its start may wait for the mesh (its NATS
    connection and its join checks) before it exits 3. A large mesh starting on a small
    machine needs longer than the operator's default."""
    secure: bool = True
    """Generate a mesh directory per run (CAs, each site's certificate and nkey, an operator
    identity) and run every server with TLS and permissions. False: plaintext loopback."""
    procs: dict[str, SiteProcess] = field(default_factory=dict, init=False)
    proxy: FaultProxy | None = field(default=None, init=False)
    configs: dict[str, SiteConfig] = field(default_factory=dict, init=False)
    identity: Identity | None = field(default=None, init=False)
    """The operator identity of this mesh's own connections (None when not `secure`)."""

    note = ""
    """Said after the header of each site's config file (what is special about this mesh)."""

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()

    @property
    def mesh_dir(self) -> Path:
        return self.workdir / "mesh"

    def _make_keys(self, names: Sequence[str]) -> SecurityConfig | None:
        """The mesh's trust material, once per work directory (a restart reuses it)."""
        if not self.secure:
            return None
        if not (self.mesh_dir / ROSTER_FILE).exists():
            hosts = {s: self.cert_hosts(s) for s in names}
            init_mesh(self.mesh_dir, self.mesh, hosts, operators=[OPERATOR_ID])
        self.identity = load_identity(self.mesh_dir / "identities" / OPERATOR_ID)
        return SecurityConfig(dir=str(self.mesh_dir))

    def cert_hosts(self, site: str) -> list[str]:
        """Names a site's certificate holds besides loopback (its servers' route hosts)."""
        return []

    def connect(self, name: str, sites: Iterable[str] | None = None) -> MeshConnection:
        """A started connection to the sites' servers, as this mesh's operator."""
        from harmony.mesh.connection import MeshConnection

        return MeshConnection(self.client_urls(sites), name, identity=self.identity).start()

    def identity_of(self, name: str) -> Identity:
        """The identity directory `name` of this mesh (a site or an identity)."""
        where = self.mesh_dir / ("sites" if name in self.configs else "identities") / name
        return load_identity(where)

    # ------------------------------------------------------------------ configuration
    def workloads_for(self, site: str) -> list[WorkloadConfig]:
        if site in self.witnesses:
            return []
        return list(self.site_workloads.get(site, self.workloads))

    def timings_for(self, site: str) -> Timings:
        return self.site_timings.get(site, self.timings)

    def core_sites(self) -> list[str]:
        """The mesh's core sites (every site, unless `cores` names how many)."""
        names = [*self.witnesses, *self.sites]
        return names[: self.cores] if self.cores else [*self.sites, *self.witnesses]

    def nats_configs(self, names: Sequence[str]) -> dict[str, NatsConfig]:
        """Each site's NATS settings (embedded servers on loopback; routes, and an edge's
        leaf links, through a new `FaultProxy` when `proxied`)."""
        if self.cores:
            cores = self.core_sites()
            edges = [s for s in names if s not in cores]
            nats, links = core_edge_nats(cores, edges, self.proxied)
        else:
            nats, links = loopback_nats(names, self.proxied)
        if self.proxied:
            self.proxy = FaultProxy()
            for (a, b), (port, target) in links.items():
                self.proxy.add(a, b, port, target)
        return nats

    def write_configs(self) -> dict[str, Path]:
        """Pick free ports and write one TOML file per site into the work directory."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        names = [*self.sites, *self.witnesses]
        nats = self.nats_configs(names)
        security = self._make_keys(names)
        metrics_ports = dict(zip(names, free_ports(len(names)), strict=True))
        for s in names:
            cfg = SiteConfig(
                mesh=self.mesh,
                site=s,
                data_dir=str(self.workdir / s),
                witness=s in self.witnesses,
                nats=nats[s],
                timings=self.timings_for(s),
                supervision=self.supervision,
                metrics=MetricsConfig(port=metrics_ports[s]),
                workloads=self.workloads_for(s),
                security=security,
                labels=self.site_labels.get(s, {}),
                price=self.site_prices.get(s),
            )
            path = self.workdir / f"{s}.toml"
            header = f"site {s} of mesh {self.mesh}, written by harmony.sim.launch{self.note}"
            self.configs[s] = write_site_config(path, cfg, header)
            self.procs[s] = SiteProcess(
                s, path, self.workdir / f"{s}.log", self.workdir / f"{s}.ready"
            )
        return {s: self.procs[s].config_path for s in names}

    def client_urls(self, sites: Iterable[str] | None = None) -> list[str]:
        """Client URLs of these sites' servers (all by default). In a core-and-edge mesh,
        of the cores among them (all cores if none is): a client of an edge's server
        reaches the rest of the mesh only as far as that edge's permissions allow."""
        chosen = list(sites) if sites is not None else list(self.configs)
        if self.cores:
            cores = self.core_sites()
            chosen = [s for s in chosen if s in cores] or cores
        return [f"nats://127.0.0.1:{self.configs[s].nats.client_port}" for s in chosen]

    # ------------------------------------------------------------------ processes
    def start(
        self, sites: Iterable[str] | None = None, timeout: float = 60.0, wait_formed: bool = True
    ) -> None:
        """Start the agents (all by default), wait until each one reports ready and, unless
        told otherwise, until all running sites see each other."""
        if not self.procs:
            self.write_configs()
        if self.proxy is not None and not self.proxy.running:
            self.proxy.start()
        chosen = list(sites) if sites is not None else list(self.procs)
        for s in chosen:
            self._spawn(self.procs[s])
        for s in chosen:
            self.wait_ready(s, timeout)
        if wait_formed:
            self.wait_formed(timeout)

    def wait_formed(self, timeout: float = 60.0) -> None:
        """Wait until every running site sees alive every other one it listens to (routes +
        heartbeats; in a mesh that names cores, an edge listens to its topologies and the cores)."""
        from harmony.client import wait_formed

        running = {s for s, p in self.procs.items() if p.running}
        conn = self.connect("harmony-launch", running)
        try:
            conn.wait_connected(timeout)
            if not wait_formed(conn, self.mesh, running, timeout):
                logs = "\n".join(f"--- {s}\n{self.procs[s].log_tail(15)}" for s in running)
                raise LaunchError(f"mesh did not form within {timeout:g} s\n{logs}")
        finally:
            conn.close()

    def _spawn(self, sp: SiteProcess) -> None:
        if sp.running:
            return
        with contextlib.suppress(FileNotFoundError):
            sp.ready_file.unlink()
        cmd = [
            self.python,
            "-m",
            "harmony",
            "agent",
            "--config",
            str(sp.config_path),
            "--ready-file",
            str(sp.ready_file),
            "--log-level",
            self.log_level,
            "--connect-timeout",
            f"{self.connect_timeout:g}",
        ]
        with open(sp.log_path, "ab") as log:
            sp.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def spawn(self, site: str) -> None:
        """Start one agent without waiting for anything (see `wait_ready`, `wait_exit`)."""
        if not self.procs:
            self.write_configs()
        if self.proxy is not None and not self.proxy.running:
            self.proxy.start()
        self._spawn(self.procs[site])

    def wait_exit(self, site: str, timeout: float) -> int | None:
        """The agent's exit status once it exited, or None if it still runs at `timeout`."""
        proc = self.procs[site].proc
        if proc is None:
            return None
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def wait_ready(self, site: str, timeout: float = 60.0) -> None:
        sp = self.procs[site]
        deadline = time.monotonic() + timeout
        while not sp.ready_file.exists():
            if sp.proc is None or sp.proc.poll() is not None:
                code = sp.proc.returncode if sp.proc else None
                raise LaunchError(f"agent {site} exited with {code}:\n{sp.log_tail()}")
            if time.monotonic() > deadline:
                raise LaunchError(f"agent {site} not ready within {timeout:g} s:\n{sp.log_tail()}")
            time.sleep(0.05)

    def permission_violations(self) -> list[str]:
        """Lines of the sites' server logs where a user was refused a subject. Normal
        operation must have none: each one is an agent (or tool) doing something its
        permissions do not allow, i.e. a bug in them or in it."""
        found = []
        for site in self.configs:
            for log in sorted((self.workdir / site / "nats").glob("nats-server.log*")):
                with contextlib.suppress(OSError):
                    text = log.read_text(errors="replace")
                    found += [f"{site}: {ln}" for ln in text.splitlines() if "Violation" in ln]
        return found

    def server_pids(self, site: str) -> list[int]:
        conf = str(self.workdir / site / "nats")
        return [p for p in pids_mentioning(conf) if p != (self.procs[site].proc or _NoProc).pid]

    def kill(self, site: str, sig: int = signal.SIGKILL, with_server: bool = True) -> None:
        """Kill a site's agent (its whole process group) and, by default, its nats-server."""
        sp = self.procs[site]
        if with_server:
            for pid in self.server_pids(site):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        if sp.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(sp.proc.pid, sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    sp.proc.wait(30)
        if with_server and sig == signal.SIGKILL:
            # SIGKILL is asynchronous: return once the server is really gone.
            deadline = time.monotonic() + 10
            while self.server_pids(site) and time.monotonic() < deadline:
                time.sleep(0.02)

    def stop(self, grace: float = 20.0, sweep: bool = True) -> None:
        """SIGTERM every agent, wait, SIGKILL what is left; then sweep strays (unless the
        caller sweeps itself, after giving surviving tethers their chance to fence)."""
        running = [sp for sp in self.procs.values() if sp.running]
        for sp in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(sp.proc.pid, signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + grace
        try:
            for sp in running:
                assert sp.proc is not None
                try:
                    sp.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(sp.proc.pid, signal.SIGKILL)
                    sp.proc.wait(5)  # a loaded machine may take longer to reap: still sweep
        finally:
            if sweep:
                self.sweep()

    def sweep(self) -> None:
        """SIGKILL every process naming the work directory and every process of the sites'
        workload containments (a copy whose agent and keeper were killed together leaves
        some), remove their cgroups; stop the proxy."""
        for pid in pids_mentioning(str(self.workdir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        marked = scan_marked()  # one pass over /proc for every containment of the mesh
        for site, cfg in self.configs.items():
            for w in expand(cfg).workloads:  # a horizontal workload's copies are its slots'
                box = Containment(containment_id(cfg.data_dir, site, w.name))
                held = box.cgroup is not None and box.cgroup.procs()
                if box.id in marked or held:
                    box.kill()
                box.remove()
        if self.proxy is not None:
            self.proxy.stop()

    def __enter__(self) -> LocalMesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def alive(pid: int) -> bool:
    """Whether `pid` is a live (non-zombie) process."""
    st = procfs.stat(pid)
    return st is not None and st.alive


def describe(pid: int) -> str:
    """`pid: command line` for a report."""
    cmd = procfs.cmdline(pid)
    return f"{pid}: {cmd[:120]}" if cmd else str(pid)


def pids_with_env(entry: str) -> list[int]:
    """Pids of processes whose environment holds `entry` (``NAME=value``): finds workload
    processes, whose command lines do not name the simulation's directory."""
    name, _, value = entry.partition("=")
    me = os.getpid()
    return [
        p for p in procfs.pids() or [] if p != me and procfs.environ(p, (name,)).get(name) == value
    ]


class _NoProc:
    pid = -1
