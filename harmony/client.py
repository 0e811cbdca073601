"""Reading the mesh from outside an agent: snapshots of every site's actor tree.

Used by `harmony status`, the demo's live view, the TUI and the tests.
"""

from __future__ import annotations

import msgspec

from harmony.actors.messages import Snapshot, SnapshotRequest
from harmony.mesh import subjects, wire
from harmony.mesh.connection import MeshConnection


def expected_sites(snaps: dict[str, Snapshot]) -> set[str]:
    """Sites we should hear from: every responder, and every peer one of them sees alive."""
    want = set(snaps)
    for s in snaps.values():
        want.update(p.site for p in s.peers if p.state in ("alive", "suspect"))
    return want


def collect_snapshots(conn: MeshConnection, mesh: str, timeout: float = 2.0) -> dict[str, Snapshot]:
    """Ask every site of `mesh` for its snapshot; return as soon as every expected site
    answered, or at `timeout` with whatever came."""
    snaps: dict[str, Snapshot] = {}

    def add(raw: bytes) -> None:
        try:
            snap = wire.decode(raw)
        except wire.WireError:
            return
        if isinstance(snap, Snapshot):
            snaps[snap.site] = snap

    def done(replies: list[bytes]) -> bool:
        add(replies[-1])
        return bool(snaps) and expected_sites(snaps) <= set(snaps)

    conn.gather(subjects.snapshot_all(mesh), wire.encode(SnapshotRequest()), timeout, done)
    return dict(sorted(snaps.items()))


def snapshot_to_builtins(snap: Snapshot) -> object:
    return msgspec.to_builtins(snap)
