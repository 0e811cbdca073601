"""What a core-and-edge mesh's sites must agree on, kept in the core: its list of cores.

The first core site to join writes the mesh's core list (``[nats] cores``) to the key
``cores`` of the KV bucket ``harmony-<mesh>-mesh`` (create only: a CAS on "no value", never
overwritten, no expiry). Every site that joins later, core or edge, reads it and compares
it with its own list; a site that disagrees is refused (`CoresDisagree`, the agent exits 2
naming both lists), as a site whose lease timings disagree with the lease bucket is.

Only meshes that name their cores use it; an all-core mesh never creates the bucket.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType

from harmony.mesh.connection import MeshConnection
from harmony.security.permissions import CORES_KEY, mesh_info_bucket

__all__ = ["CORES_KEY", "CoresDisagree", "MeshInfoMissing", "agree_on_cores", "mesh_info_bucket"]

_STREAM_EXISTS_OTHERWISE = 10058


class CoresDisagree(Exception):
    """This site's core list differs from the one the mesh was formed with."""

    def __init__(self, bucket: str, theirs: list[str], ours: list[str]) -> None:
        self.bucket, self.theirs, self.ours = bucket, theirs, ours
        super().__init__(f"the mesh's cores are {theirs} ({bucket}), this site's are {ours}")


class MeshInfoMissing(Exception):
    """No core has written the core list yet (an edge waits for one)."""


def agree_on_cores(
    conn: MeshConnection,
    mesh: str,
    cores: Sequence[str],
    *,
    core: bool,
    replicas: int,
    timeout: float = 5.0,
) -> None:
    """Check (a core: write, if it is the first) the mesh's core list against `cores`.

    Raises `CoresDisagree`, `MeshInfoMissing` (an edge before any core wrote it), or a NATS
    error while the core is not reachable or electing (the caller retries those)."""
    bucket = mesh_info_bucket(mesh)
    ours = list(cores)

    async def check(nc: Client) -> list[str] | None:
        js = nc.jetstream(timeout=timeout)
        try:
            kv = await js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            if not core:
                raise MeshInfoMissing(f"{bucket} does not exist yet") from None
            cfg = KeyValueConfig(
                bucket=bucket, history=1, replicas=replicas, storage=StorageType.FILE
            )
            try:
                kv = await js.create_key_value(cfg)
            except nats.js.errors.APIError as e:
                if getattr(e, "err_code", None) != _STREAM_EXISTS_OTHERWISE:
                    raise
                kv = await js.key_value(bucket)
        if core:
            try:
                await kv.create(CORES_KEY, msgspec.json.encode(ours))
                return None
            except nats.js.errors.KeyWrongLastSequenceError:
                pass  # another core wrote it first: compare with that
        try:
            entry = await kv.get(CORES_KEY)
        except nats.js.errors.KeyNotFoundError:
            raise MeshInfoMissing(f"{bucket} has no {CORES_KEY!r} yet") from None
        theirs: list[str] = msgspec.json.decode(entry.value or b"[]", type=list[str])
        return theirs

    theirs = conn.run(check, timeout + 1.0)
    if theirs is not None and sorted(theirs) != sorted(ours):
        raise CoresDisagree(bucket, theirs, ours)
