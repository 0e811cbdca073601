"""Test helpers around a LocalMesh of real agent processes."""

from __future__ import annotations

from harmony.actors.messages import Snapshot
from harmony.client import collect_snapshots
from harmony.mesh.connection import MeshConnection
from harmony.sim.launch import LocalMesh


def snapshots(conn: MeshConnection, mesh: LocalMesh, timeout: float = 1.5) -> dict[str, Snapshot]:
    return collect_snapshots(conn, mesh.mesh, timeout)


def peer_state(snap: Snapshot, site: str) -> str | None:
    return next((p.state for p in snap.peers if p.site == site), None)


def actor(snap: Snapshot, path: str):  # type: ignore[no-untyped-def]
    return next((a for a in snap.actors if a.path == path), None)


def dump(mesh: LocalMesh) -> str:
    return "\n".join(f"--- {s} log ---\n{p.log_tail(40)}" for s, p in mesh.procs.items())
