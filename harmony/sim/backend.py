"""Backends: how a simulation runs sites and injects faults into them.

`ProcessBackend` (the default) needs neither root nor Docker: every site is a real agent
process with its embedded nats-server (`LocalMesh`), and every route between two servers
passes through the `FaultProxy`, which cuts, delays and drops per ordered pair of sites.
`harmony.sim.containers.ContainerBackend` runs the servers in Docker instead.

A scenario that names `cores` runs a core-and-edge mesh: the cores routed to each other,
every other site an edge whose server is a leaf node of every core, each leaf link through
the proxy as the (edge, core) link (cutting it closes the connection, both directions).

Process facts a scenario relies on:

* an agent runs in its own process group; its nats-server is tied to it (``setpriv
  --pdeathsig``) and dies with it. Its workloads' tethers, keepers and watchers run outside
  that group so that they survive it and fence at the deadline; killing the agent (`kill
  what="agent"`) signals its group only;
* killing only the server leaves the agent, which restarts its server after a back-off;
* pausing SIGSTOPs the agent's process group only: the agent freezes (no heartbeats, no
  renewals, no fencing) while its nats-server and workload keep running, like an agent
  stuck in a very long GC pause; `freeze` stops more of the site (see `harmony.sim.freeze`).

Files of a run (`truth` is the simulation's work directory, the same for every start
attempt; the backend's own `workdir` may be an attempt's sub-directory):

* ``<truth>/records/<site>.<workload>.jsonl``: each copy's own records (``HARMONY_RECORDS``);
* ``<truth>/ledger.db``: the store every copy writes through the guard (``HARMONY_LEDGER``);
* ``<workdir>/hooks/<site>/``: flag files and pid files of the hooks scripts;
* ``<workdir>/<site>/``: the site's data_dir (a tmpfs when the scenario sizes it).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Protocol

from harmony.actors.drivers.containment import containment_id
from harmony.config import (
    FailoverTopologyConfig,
    HooksDriverConfig,
    PriceConfig,
    ProcessDriverConfig,
    WorkloadConfig,
)
from harmony.security.identity import Identity
from harmony.sim import disk
from harmony.sim.freeze import Frozen, freeze, thaw
from harmony.sim.horizontal import configured, horizontal_topology
from harmony.sim.launch import LocalMesh, alive, describe, pids_mentioning, pids_with_env
from harmony.sim.price_hooks import price_hook, write_price
from harmony.sim.records import LEDGER_ENV, RECORDS_ENV
from harmony.sim.scenario import FLAGS, Scenario, WorkloadSpec, cost_topology

EXAMPLE_WORKLOAD = [sys.executable, "-m", "harmony.sim.example_workload"]
PYTHON = "{python}"
"""In a scenario's `command`: this interpreter (see `WorkloadSpec`)."""


class Backend(Protocol):
    workdir: Path

    def start(self, timeout: float) -> None: ...
    def stop(self) -> None: ...
    def client_url(self, site: str) -> str: ...
    def identity(self) -> Identity | None: ...
    def http_url(self, site: str) -> str: ...
    def journal(self, site: str) -> Path: ...
    def log_tail(self, site: str, n: int = 20) -> str: ...
    def log_text(self, site: str) -> str: ...
    def set_cuts(self, pairs: set[tuple[str, str]]) -> None: ...
    def set_delay(self, pairs: set[tuple[str, str]], seconds: float) -> None: ...
    def set_drop(self, pairs: set[tuple[str, str]], probability: float) -> None: ...
    def heal_all(self) -> None: ...
    def kill(self, site: str, what: str, sig: int) -> None: ...
    def restart(self, site: str, timeout: float) -> None: ...
    def start_refused(self, site: str, timeout: float) -> int | None: ...
    def pause(self, site: str) -> None: ...
    def resume(self, site: str) -> None: ...
    def freeze(self, site: str, what: str) -> int: ...
    def thaw(self, site: str) -> None: ...
    def set_flag(self, site: str, flag: str, on: bool) -> bool: ...
    def set_price(self, site: str, price: float) -> None: ...
    def fill_disk(self, site: str) -> int: ...
    def free_disk(self, site: str) -> None: ...
    def containments(self) -> dict[tuple[str, str], str]: ...
    def leftovers(self) -> list[str]: ...


def sim_marker(workdir: Path) -> str:
    """An environment entry every workload of this simulation carries (to find strays)."""
    return f"HARMONY_SIM_DIR={workdir}"


def records_path(truth: Path, site: str, workload: str) -> Path:
    return truth / "records" / f"{site}.{workload}.jsonl"


def ledger_path(truth: Path) -> Path:
    return truth / "ledger.db"


def hook_dir(workdir: Path, site: str) -> Path:
    return workdir / "hooks" / site


def expand(command: list[str]) -> list[str]:
    """``{python}`` -> this interpreter (quoted inside a longer shell string)."""
    return [
        sys.executable if arg == PYTHON else arg.replace(PYTHON, shlex.quote(sys.executable))
        for arg in command
    ]


def workload_config(
    w: WorkloadSpec, workdir: Path, site: str, truth: Path | None = None
) -> WorkloadConfig:
    """The site's config of `w`: records per site, one ledger, the sim's stray marker."""
    truth = truth or workdir
    name, _, value = sim_marker(workdir).partition("=")
    env = {
        name: value,
        RECORDS_ENV: str(records_path(truth, site, w.name)),
        LEDGER_ENV: str(ledger_path(truth)),
    }
    driver: ProcessDriverConfig | HooksDriverConfig
    if w.driver == "hooks":
        hooks = shlex.quote(str(hook_dir(workdir, site)))
        py = shlex.quote(sys.executable)

        def hook(action: str) -> str:
            return f"{py} -m harmony.sim.hook_scripts {action} --dir {hooks}"

        driver = HooksDriverConfig(
            start=hook("start"),
            stop=hook("stop"),
            fence=hook("fence"),
            probe=hook("probe"),
            probe_interval=w.probe_interval,
            timeout=w.hook_timeout,
            env=env,
        )
    else:
        command = expand(w.command) or EXAMPLE_WORKLOAD
        driver = ProcessDriverConfig(command=command, restart="on-failure", env=env)
    return WorkloadConfig(
        name=w.name,
        strategy=w.strategy,
        reconcile=w.reconcile,
        driver=driver,
        topology=cost_topology(w)
        if w.topology == "cost"
        else horizontal_topology(w)
        or FailoverTopologyConfig(
            primary=w.primary, standbys=list(w.standbys), constraints=list(w.constraints)
        ),
    )


class ProcessBackend:
    """Sites as local processes, links through the fault proxy."""

    def __init__(
        self,
        scenario: Scenario,
        workdir: Path,
        log_level: str = "info",
        truth: Path | None = None,
    ) -> None:
        self.workdir = workdir
        self.truth = truth or workdir
        self.scenario = scenario
        # A core-and-edge mesh: LocalMesh takes its cores as the witnesses, then the
        # first sites (validation: every witness is a core), so the cores go first.
        cores = [s for s in scenario.sites if s in scenario.cores]
        self.mesh = LocalMesh(
            workdir,
            mesh=scenario.mesh_name,
            sites=[*cores, *(s for s in scenario.sites if s not in cores)],
            witnesses=list(scenario.witnesses),
            cores=len(scenario.cores),
            site_workloads={
                s: [workload_config(w, workdir, s, self.truth) for w in configured(scenario)]
                for s in scenario.sites
            },
            timings=scenario.timing_values(),
            site_timings={s: scenario.timing_values(s) for s in scenario.site_timings},
            site_labels=dict(scenario.labels),
            site_prices={
                s: PriceConfig(hook=str(price_hook(workdir, s)), interval=scenario.price_interval)
                for s in scenario.prices
            },
            log_level=log_level,
            proxied=True,
        )
        self.paused: set[str] = set()
        self.frozen: dict[str, Frozen] = {}
        self.mounted: list[Path] = []
        self.stray: list[str] = []

    def start(self, timeout: float) -> None:
        self.prepare()
        self.mesh.start(self.normal_sites(), timeout)

    def prepare(self) -> None:
        """Directories of the run and the sites' tmpfs mounts, before any agent starts."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.truth / "records").mkdir(parents=True, exist_ok=True)
        for s in self.scenario.sites:
            hook_dir(self.workdir, s).mkdir(parents=True, exist_ok=True)
        for s, price in self.scenario.prices.items():
            write_price(self.workdir, s, price)
        for s, size in self.scenario.data_dir_size.items():
            disk.mount_tmpfs(self.workdir / s, size)
            self.mounted.append(self.workdir / s)

    def normal_sites(self) -> list[str]:
        """Sites started at once (those expected to refuse start later, alone)."""
        return [s for s in self.scenario.all_sites if s not in self.scenario.expect_refused]

    def start_refused(self, site: str, timeout: float) -> int | None:
        """Start a site that should refuse to run: its exit status, or None if it still
        runs after `timeout` (then it joined the mesh)."""
        self.mesh.spawn(site)
        return self.mesh.wait_exit(site, timeout)

    def stop(self) -> None:
        """Stop everything, in an order that lets the mesh stop cleanly first: flags off,
        sites thawed, disks freed, agents SIGTERMed; then the workloads' own fencing gets
        a lease's time to end what the agents left; whatever is still there is a stray
        (reported by `leftovers`) and is killed; mounts go last, always."""
        try:
            for s in self.scenario.sites:
                for flag in FLAGS:
                    self.set_flag(s, flag, False)
            for site in list(self.frozen):
                self.thaw(site)
            for site in list(self.paused):  # a stopped process cannot handle SIGTERM
                self.resume(site)
            for path in self.mounted:
                disk.free(path)
            self.mesh.stop(sweep=False)
            self._reap_strays()
        finally:
            problems = []
            for path in self.mounted:
                try:
                    disk.unmount(path)
                except disk.DiskError as e:
                    problems.append(str(e))
            self.mounted = []
            if problems:
                raise disk.DiskError("; ".join(problems))

    def _reap_strays(self) -> None:
        marker = sim_marker(self.workdir)
        timings = [self.scenario.timing_values(s) for s in self.scenario.all_sites]
        wait = max(t.lease_ttl + t.stop_grace for t in timings) + 2.0
        deadline = time.monotonic() + wait
        while pids_with_env(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [p for p in pids_with_env(marker) if alive(p)]
        self.stray = [describe(p) for p in left]
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
        self.mesh.sweep()

    def client_url(self, site: str) -> str:
        """The site's own server (an edge's too: the observer must reach an edge's agent
        while its leaf links are cut; the operator is a user of every server)."""
        return f"nats://127.0.0.1:{self.mesh.configs[site].nats.client_port}"

    def identity(self) -> Identity | None:
        """The operator identity the observer connects as (None: an insecure mesh)."""
        return self.mesh.identity

    def http_url(self, site: str) -> str:
        return f"http://127.0.0.1:{self.mesh.configs[site].nats.http_port}"

    def journal(self, site: str) -> Path:
        return Path(self.mesh.configs[site].data_dir) / "journal.jsonl"

    def log_tail(self, site: str, n: int = 20) -> str:
        return self.mesh.procs[site].log_tail(n)

    def log_text(self, site: str) -> str:
        try:
            return self.mesh.procs[site].log_path.read_text(errors="replace")
        except OSError:
            return ""

    def containments(self) -> dict[tuple[str, str], str]:
        """(site, workload) -> containment id, for every workload of every site; known
        before any site starts (the ids name the data directories)."""
        out = {}
        for s in self.scenario.sites:
            data_dir = self.mesh.configs[s].data_dir if s in self.mesh.configs else ""
            for w in self.scenario.workloads:
                out[(s, w.name)] = containment_id(data_dir or self.workdir / s, s, w.name)
        return out

    def _site_containments(self, site: str) -> list[str]:
        return [cid for (s, _), cid in self.containments().items() if s == site]

    # -- links ---------------------------------------------------------------------------
    @property
    def _proxy(self):  # type: ignore[no-untyped-def]
        assert self.mesh.proxy is not None, "the process backend always runs a proxy"
        return self.mesh.proxy

    def set_cuts(self, pairs: set[tuple[str, str]]) -> None:
        self._proxy.set_cuts(pairs)

    def set_delay(self, pairs: set[tuple[str, str]], seconds: float) -> None:
        self._proxy.set_delay(pairs, seconds)

    def set_drop(self, pairs: set[tuple[str, str]], probability: float) -> None:
        self._proxy.set_drop(pairs, probability)

    def heal_all(self) -> None:
        self._proxy.heal_all()

    # -- processes -----------------------------------------------------------------------
    def kill(self, site: str, what: str, sig: int) -> None:
        servers = self.mesh.server_pids(site)
        if what in ("server", "both"):
            for pid in servers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        if what in ("agent", "both"):
            self.paused.discard(site)
            # The agent's process group only: a tether outside it must live on to fence.
            self.mesh.kill(site, sig, with_server=False)
            # The server follows its agent (pdeathsig): wait so that a restart finds the
            # ports free.
            deadline = time.monotonic() + 15
            while any(alive(p) for p in servers) and time.monotonic() < deadline:
                time.sleep(0.05)

    def restart(self, site: str, timeout: float) -> None:
        self.mesh.start([site], timeout=timeout, wait_formed=False)

    def _group(self, site: str) -> int | None:
        proc = self.mesh.procs[site].proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def pause(self, site: str) -> None:
        pgid = self._group(site)
        if pgid is not None:
            os.killpg(pgid, signal.SIGSTOP)
            self.paused.add(site)

    def resume(self, site: str) -> None:
        pgid = self._group(site)
        self.paused.discard(site)
        if pgid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGCONT)

    def freeze(self, site: str, what: str) -> int:
        """SIGSTOP the site's processes (see `harmony.sim.freeze`); how many were stopped
        besides the agent's group."""
        if site in self.frozen:
            raise ValueError(f"site {site} is frozen already")
        servers = self.mesh.server_pids(site) if what == "site" else []
        done = freeze(what, self._group(site), servers, self._site_containments(site))
        self.frozen[site] = done
        return len(done.pids)

    def thaw(self, site: str) -> None:
        done = self.frozen.pop(site, None)
        if done is not None:
            thaw(done, self._site_containments(site))

    def set_flag(self, site: str, flag: str, on: bool) -> bool:
        """Create or remove the flag file; whether that changed anything."""
        path = hook_dir(self.workdir, site) / flag
        if on == path.exists():
            return False
        if on:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return True

    def set_price(self, site: str, price: float) -> None:
        write_price(self.workdir, site, price)

    def fill_disk(self, site: str) -> int:
        return disk.fill(self.workdir / site)

    def free_disk(self, site: str) -> None:
        disk.free(self.workdir / site)

    def leftovers(self) -> list[str]:
        pids = set(pids_mentioning(str(self.workdir))) | set(
            pids_with_env(sim_marker(self.workdir))
        )
        return self.stray + [describe(p) for p in sorted(pids) if alive(p)]
