"""The simulation's window on the mesh: each site's snapshot, asked through its own server.

One connection per site, to that site's own nats-server only: during a partition a single
connection would see just one side, while each site's own server always reaches its agent
(partitions cut routes between servers, never an agent from its server). A background
thread refreshes every site's snapshot; conditions and the live view read the latest ones.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Sequence

from harmony.actors.messages import Snapshot, SnapshotRequest
from harmony.mesh import subjects, wire
from harmony.mesh.connection import MeshConnection
from harmony.security.identity import Identity


class Observer:
    def __init__(
        self,
        mesh: str,
        sites: Sequence[str],
        url_of: Callable[[str], str],
        period: float = 0.3,
        identity: Identity | None = None,
    ) -> None:
        self.mesh = mesh
        self.sites = list(sites)
        self.period = period
        self.conns = {
            s: MeshConnection([url_of(s)], f"harmony-sim-{s}", identity=identity).start()
            for s in sites
        }
        self._latest: dict[str, tuple[float, Snapshot]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(len(self.sites), "sim-observe")
        self._thread = threading.Thread(target=self._run, name="sim-observer", daemon=True)

    def start(self) -> Observer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pool.shutdown(wait=True, cancel_futures=True)
        for c in self.conns.values():
            c.close()

    def _ask(self, site: str) -> Snapshot | None:
        conn = self.conns[site]
        if not conn.connected:
            return None
        try:
            raw = conn.request(
                subjects.snapshot(self.mesh, site), wire.encode(SnapshotRequest()), 1.0
            )
            snap = wire.decode(raw)
        except Exception:  # no answer: the site is down, frozen or still starting
            return None
        return snap if isinstance(snap, Snapshot) else None

    def refresh(self) -> dict[str, Snapshot]:
        asked = time.monotonic()
        answers = list(self._pool.map(self._ask, self.sites))
        with self._lock:
            for site, snap in zip(self.sites, answers, strict=True):
                if snap is not None:
                    self._latest[site] = (asked, snap)
                else:
                    self._latest.pop(site, None)
        return self.snapshots()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.refresh()
            except RuntimeError:  # the pool was shut down under us
                return
            self._stop.wait(max(0.0, self.period - (time.monotonic() - started)))

    def snapshots(self) -> dict[str, Snapshot]:
        """The latest answer of every site that answered its last request."""
        with self._lock:
            return {s: snap for s, (_, snap) in self._latest.items()}


def runners(snaps: dict[str, Snapshot], workload: str) -> set[str]:
    """Sites whose driver of `workload` reports running."""
    path = f"agent/workload/{workload}/run"
    return {
        site
        for site, snap in snaps.items()
        if any(a.path == path and a.state == "running" for a in snap.actors)
    }


def peer_state(snaps: dict[str, Snapshot], site: str, peer: str) -> str | None:
    snap = snaps.get(site)
    if snap is None:
        return None
    return next((p.state for p in snap.peers if p.site == peer), None)
