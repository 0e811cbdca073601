"""LocalMeshes of real agent processes: timings, reading them back, the failover `Watcher`.

Safety is judged from ground truth, as the simulator judges it: the example workload's own
records (start, a tick every 50 ms, stop) and a scan of every process of each copy's
containment, never the agents' journals (`Watcher.assert_safe`).

Timings: `harmony.sim.scenario.SIM_TIMINGS` (safe for absolute-consistency, a failover in
seconds) for meshes that fail over; `FAST_HEARTBEATS` for meshes that only need peers to go
silent quickly.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from harmony.actors.drivers.containment import containment_id
from harmony.actors.journal import JournalEvent
from harmony.actors.messages import ActorInfo, Snapshot
from harmony.client import collect_snapshots
from harmony.config import Timings
from harmony.config.slots import expand
from harmony.mesh.connection import MeshConnection
from harmony.sim.checks import check_absolute, check_stale_writes
from harmony.sim.history import Interval, fault, load_history
from harmony.sim.launch import LocalMesh
from harmony.sim.records import read_records
from harmony.sim.scanner import Scanner
from harmony.sim.truthfiles import load_truth, truth_files
from support.waiting import wait_until

FAST_HEARTBEATS = Timings(
    heartbeat_interval=0.2, suspect_after=1.5, silent_after=2.5, ask_timeout=3.0
)
"""Peers suspect and silent within about half a second; the lease timings are the defaults."""


def snapshots(conn: MeshConnection, mesh: LocalMesh, timeout: float = 1.5) -> dict[str, Snapshot]:
    """The snapshot of every site that answers within `timeout` s."""
    return collect_snapshots(conn, mesh.mesh, timeout)


def peer_state(snap: Snapshot, site: str) -> str | None:
    return next((p.state for p in snap.peers if p.site == site), None)


def actor(snap: Snapshot, path: str) -> ActorInfo | None:
    return next((a for a in snap.actors if a.path == path), None)


def dump(mesh: LocalMesh, lines: int = 40) -> str:
    """The tail of every agent's log, for a failure message."""
    return "\n".join(f"--- {s} log ---\n{p.log_tail(lines)}" for s, p in mesh.procs.items())


class Watcher:
    """A test's window on the mesh: snapshots, runners of a workload, the merged history."""

    def __init__(self, mesh: LocalMesh) -> None:
        self.mesh = mesh
        # Watch from the last site first: tests cut off or kill the first one (the primary).
        urls = mesh.client_urls(reversed(list(mesh.configs)))
        self.conn = MeshConnection(urls, "test-watch", identity=mesh.identity).start()
        self.conn.wait_connected(10)
        self.faults: list[JournalEvent] = []
        containments = {
            (site, w.name): containment_id(cfg.data_dir, site, w.name)
            for site, cfg in mesh.configs.items()
            for w in expand(cfg).workloads  # a horizontal workload: its slots
        }
        self.scanner = Scanner(mesh.workdir / "scans.jsonl", containments).start()

    def close(self) -> None:
        self.scanner.stop()
        self.conn.close()
        # Secure by default: nothing the agents or this watcher did may have been refused.
        assert self.mesh.permission_violations() == []

    def truth(self, name: str) -> tuple[list[Interval], list[str]]:
        """(activity intervals, safety violations) of `name` from ground truth so far."""
        events, horizon = self.history(), time.monotonic()
        truth = load_truth(truth_files(self.mesh.workdir), events, horizon)
        intervals = truth.intervals.get(name, [])
        assert intervals, f"no ground truth for {name}: did its copies record?"
        found, _ = check_absolute(intervals, name, horizon, events=events)
        found += check_stale_writes(truth.ledger or [], truth.owners)
        return intervals, [f"{v.checker}: {v.message} {v.explain}".strip() for v in found]

    def assert_safe(self, name: str = "ledger") -> list[Interval]:
        """Never two active copies, tokens only grow, no stale write committed: from the
        copies' own records and the process table. Returns the activity intervals."""
        intervals, violations = self.truth(name)
        assert violations == [], "\n".join(violations) + "\n" + self.tail()
        return intervals

    def snaps(self, timeout: float = 1.0) -> dict[str, Snapshot]:
        return snapshots(self.conn, self.mesh, timeout)

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
        """Wait until exactly `sites` run `name`, and (when its copies record) each of those
        copies has acted: the driver says running as soon as the process exists."""
        result: dict[str, ActorInfo] = wait_until(
            lambda: (r := self.runners(name)) and set(r) == sites and self.acting(name, r) and r,
            timeout,
            message=lambda: (
                f"{name} never ran exactly on {sites}; runners: "
                f"{sorted(self.runners(name))}\n{self.tail()}"
            ),
        )
        return result

    def acting(self, name: str, runners: dict[str, ActorInfo]) -> bool:
        """Every runner's copy has ticked under the token its driver reports."""
        path = self.mesh.workdir / "records" / f"{name}.jsonl"
        if not (self.mesh.workdir / "records").is_dir():
            return True  # these copies do not record
        ticks = {(r.site, r.token) for r in read_records([path]) if r.kind == "tick"}
        return all((site, _token(a)) in ticks for site, a in runners.items())

    def wait_one_runner(
        self, name: str, among: Iterable[str], timeout: float
    ) -> tuple[str, ActorInfo]:
        """The one site of `among` that runs `name`, once exactly one site runs it and its copy
        has acted (its own records say so)."""
        allowed = set(among)

        def one() -> tuple[str, ActorInfo] | None:
            r = self.runners(name)
            if len(r) == 1 and set(r) <= allowed and self.acting(name, r):
                return next(iter(r.items()))
            return None

        found: tuple[str, ActorInfo] = wait_until(
            one, timeout, message=lambda: f"{name} on {sorted(self.runners(name))}\n{self.tail()}"
        )
        return found

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
        return dump(self.mesh, 25)


def _token(run: ActorInfo) -> int | None:
    token = run.detail.get("token")
    return int(token) if token else None
