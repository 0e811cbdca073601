"""Shared pieces of the failover tests: meshes with a real workload, histories, waits."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from conftest import wait_until

from harmony.actors.journal import JournalEvent
from harmony.actors.messages import ActorInfo, Snapshot
from harmony.client import collect_snapshots
from harmony.config import FailoverTopologyConfig, ProcessDriverConfig, Timings, WorkloadConfig
from harmony.mesh.connection import MeshConnection
from harmony.sim.history import fault, load_history
from harmony.sim.launch import LocalMesh

# Safe (check_timings passes) but short, so a test fails over in seconds.
FAST = Timings(
    heartbeat_interval=0.25,
    suspect_after=1.5,
    silent_after=2.5,
    lease_ttl=4.0,
    renew_interval=0.5,
    fence_margin=1.5,
    stop_grace=0.5,
    ask_timeout=3.0,
)
WORKLOAD_CMD = [sys.executable, "-m", "harmony.sim.example_workload"]


def workload(
    name: str, strategy: str, primary: str, standbys: list[str], **kw: str
) -> WorkloadConfig:
    return WorkloadConfig(
        name=name,
        strategy=strategy,  # type: ignore[arg-type]
        driver=ProcessDriverConfig(command=WORKLOAD_CMD, restart="never"),
        topology=FailoverTopologyConfig(primary=primary, standbys=standbys),
        **kw,  # type: ignore[arg-type]
    )


class Watcher:
    """A test's window on the mesh: snapshots, runners of a workload, the merged history."""

    def __init__(self, mesh: LocalMesh) -> None:
        self.mesh = mesh
        # Watch from the last site first: tests cut off or kill the first one (the primary).
        urls = mesh.client_urls(reversed(list(mesh.configs)))
        self.conn = MeshConnection(urls, "test-watch").start()
        self.conn.wait_connected(10)
        self.faults: list[JournalEvent] = []

    def close(self) -> None:
        self.conn.close()

    def snaps(self, timeout: float = 1.0) -> dict[str, Snapshot]:
        return collect_snapshots(self.conn, self.mesh.mesh, timeout)

    def run_actor(self, site: str, name: str) -> ActorInfo | None:
        snap = self.snaps().get(site)
        if snap is None:
            return None
        return next((a for a in snap.actors if a.path == f"agent/workload/{name}/run"), None)

    def runners(self, name: str, snaps: dict[str, Snapshot] | None = None) -> dict[str, ActorInfo]:
        """Sites whose driver for `name` reports running."""
        snaps = snaps if snaps is not None else self.snaps()
        out = {}
        for site, snap in snaps.items():
            for a in snap.actors:
                if a.path == f"agent/workload/{name}/run" and a.state == "running":
                    out[site] = a
        return out

    def wait_runs_on(self, name: str, sites: set[str], timeout: float) -> dict[str, ActorInfo]:
        result: dict[str, ActorInfo] = wait_until(
            lambda: (r := self.runners(name)) and set(r) == sites and r,
            timeout,
            message=lambda: (
                f"{name} never ran exactly on {sites}; runners: "
                f"{sorted(self.runners(name))}\n{self.tail()}"
            ),
        )
        return result

    def record_fault(self, site: str, kind: str, reason: str) -> float:
        now = time.monotonic()
        self.faults.append(fault(site, kind, reason, now, time.time()))
        return now

    def history(self) -> list[JournalEvent]:
        journals = [
            Path(self.mesh.configs[s].data_dir) / "journal.jsonl" for s in self.mesh.configs
        ]
        return sorted([*load_history(journals), *self.faults], key=lambda e: e.mono)

    def tail(self) -> str:
        return "\n".join(f"--- {s}\n{p.log_tail(25)}" for s, p in self.mesh.procs.items())
