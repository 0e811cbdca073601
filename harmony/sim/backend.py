"""Backends: how a simulation runs sites and injects faults into them.

`ProcessBackend` (the default) needs neither root nor Docker: every site is a real agent
process with its embedded nats-server (`LocalMesh`), and every route between two servers
passes through the `FaultProxy`, which cuts, delays and drops per ordered pair of sites.
`harmony.sim.containers.ContainerBackend` runs the servers in Docker instead.

Process facts a scenario relies on:

* an agent runs in its own process group; its nats-server and workloads are tied to it
  (``setpriv --pdeathsig``), so killing the agent takes its server and workloads along;
* killing only the server leaves the agent, which restarts its server after a back-off;
* pausing SIGSTOPs the agent's process group only: the agent freezes (no heartbeats, no
  renewals, no fencing) while its nats-server and workload keep running, like an agent
  stuck in a very long GC pause.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Protocol

from harmony.config import FailoverTopologyConfig, ProcessDriverConfig, WorkloadConfig
from harmony.sim.launch import LocalMesh, pids_mentioning
from harmony.sim.scenario import Scenario, WorkloadSpec

EXAMPLE_WORKLOAD = [sys.executable, "-m", "harmony.sim.example_workload"]


class Backend(Protocol):
    workdir: Path

    def start(self, timeout: float) -> None: ...
    def stop(self) -> None: ...
    def client_url(self, site: str) -> str: ...
    def http_url(self, site: str) -> str: ...
    def journal(self, site: str) -> Path: ...
    def log_tail(self, site: str, n: int = 20) -> str: ...
    def set_cuts(self, pairs: set[tuple[str, str]]) -> None: ...
    def set_delay(self, pairs: set[tuple[str, str]], seconds: float) -> None: ...
    def set_drop(self, pairs: set[tuple[str, str]], probability: float) -> None: ...
    def heal_all(self) -> None: ...
    def kill(self, site: str, what: str, sig: int) -> None: ...
    def restart(self, site: str, timeout: float) -> None: ...
    def pause(self, site: str) -> None: ...
    def resume(self, site: str) -> None: ...
    def leftovers(self) -> list[str]: ...


def sim_marker(workdir: Path) -> str:
    """An environment entry every workload of this simulation carries (to find strays)."""
    return f"HARMONY_SIM_DIR={workdir}"


def workload_config(w: WorkloadSpec, workdir: Path) -> WorkloadConfig:
    name, _, value = sim_marker(workdir).partition("=")
    return WorkloadConfig(
        name=w.name,
        strategy=w.strategy,
        reconcile=w.reconcile,
        driver=ProcessDriverConfig(
            command=w.command or EXAMPLE_WORKLOAD, restart="on-failure", env={name: value}
        ),
        topology=FailoverTopologyConfig(primary=w.primary, standbys=list(w.standbys)),
    )


class ProcessBackend:
    """Sites as local processes, links through the fault proxy."""

    def __init__(self, scenario: Scenario, workdir: Path, log_level: str = "info") -> None:
        self.workdir = workdir
        self.mesh = LocalMesh(
            workdir,
            mesh=scenario.mesh_name,
            sites=list(scenario.sites),
            witnesses=list(scenario.witnesses),
            workloads=[workload_config(w, workdir) for w in scenario.workloads],
            timings=scenario.timing_values(),
            log_level=log_level,
            proxied=True,
        )
        self.paused: set[str] = set()

    def start(self, timeout: float) -> None:
        self.mesh.start(timeout=timeout)

    def stop(self) -> None:
        for site in list(self.paused):  # a stopped process cannot handle SIGTERM
            self.resume(site)
        self.mesh.stop()

    def client_url(self, site: str) -> str:
        return self.mesh.client_urls([site])[0]

    def http_url(self, site: str) -> str:
        return f"http://127.0.0.1:{self.mesh.configs[site].nats.http_port}"

    def journal(self, site: str) -> Path:
        return Path(self.mesh.configs[site].data_dir) / "journal.jsonl"

    def log_tail(self, site: str, n: int = 20) -> str:
        return self.mesh.procs[site].log_tail(n)

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
            self.mesh.kill(site, sig, with_server=False)
            # The server follows its agent (pdeathsig): wait so that a restart finds the
            # ports free.
            deadline = time.monotonic() + 15
            while any(_alive(p) for p in servers) and time.monotonic() < deadline:
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

    def leftovers(self) -> list[str]:
        pids = set(pids_mentioning(str(self.workdir))) | set(
            pids_with_env(sim_marker(self.workdir))
        )
        return [_describe(p) for p in sorted(pids) if _alive(p)]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return str(pid)
    return f"{pid}: {cmd[:120]}"


def pids_with_env(entry: str) -> list[int]:
    """Pids of processes whose environment holds `entry` (``NAME=value``): finds workload
    processes, whose command lines do not name the simulation's directory."""
    me, found = os.getpid(), []
    needle = entry.encode()
    for d in os.scandir("/proc"):
        if not d.name.isdigit() or int(d.name) == me:
            continue
        try:
            with open(f"/proc/{d.name}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(d.name))
        except OSError:
            continue
    return found
