"""Site prices: what running a workload costs at each site, as every agent reads it.

Each site writes a `SitePrice` to its own key of the mesh's KV bucket ``harmony-<mesh>-prices``
(a site may write only its own key, `harmony.security.permissions`), and every agent with a
``cost`` workload reads the whole bucket in one stream read, so all of them decide from the
same numbers (`harmony.strategies.cost`). The value also carries the cost moves this site
made (`CostMove`, per workload): the site a workload moved to learns from it that it was
placed there on purpose and when (the cooldown), whoever made the move.

As with site summaries the write is a plain publish (a lost one is replaced at the next),
and the bucket is created by whoever comes first.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from nats.aio.client import Client

from harmony.mesh.site_kv import Conn, SiteKeyedBucket, SiteKeyWriter
from harmony.mesh.wire import Finite, Name

KEEP = 86400.0
"""The bucket's max_age: a site that went away is forgotten after a day (its liveness,
from heartbeats, already keeps it out of every decision)."""
MAX_MOVES = 256
MAX_VALUE_BYTES = 32768

Price = Annotated[float, msgspec.Meta(ge=0, le=1e12)]


class CostMove(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The last time this site moved a workload away by price (or placed it)."""

    target: Name
    wall: Finite
    """The mover's wall clock: the sites of one mesh agree on it to well within a cooldown."""
    cost: bool = True
    """A cost move (the cooldown counts from it); False: a placement or failover."""


class SitePrice(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    site: Name
    price: Price | None
    """None: the site has no price yet (its hook never gave a good one)."""
    wall: Finite
    moves: Annotated[dict[Name, CostMove], msgspec.Meta(max_length=MAX_MOVES)] = {}


class Prices(msgspec.Struct, frozen=True):
    """The bucket as one read found it: {site: (value, seconds since the server stored it)}."""

    found: dict[str, tuple[SitePrice, float]]

    def price(self, site: str) -> float | None:
        got = self.found.get(site)
        return got[0].price if got is not None else None

    def last_move(self, workload: str) -> CostMove | None:
        """The latest move of `workload` any site recorded (by wall clock)."""
        moves = [v.moves[workload] for v, _ in self.found.values() if workload in v.moves]
        return max(moves, key=lambda mv: mv.wall, default=None)


_BUCKET = SiteKeyedBucket("prices", SitePrice, MAX_VALUE_BYTES, KEEP)
bucket_name = _BUCKET.name
key_subject = _BUCKET.key_subject
encode = _BUCKET.encode
decode = _BUCKET.decode
bucket_config = _BUCKET.config
ensure_bucket = _BUCKET.ensure


def writer(conn: Conn, mesh: str, site: str, replicas: int) -> SiteKeyWriter[SitePrice]:
    """Publishes this site's value to its key (creating the bucket when needed)."""
    return SiteKeyWriter(_BUCKET, conn, mesh, site, replicas)


async def read_all(nc: Client, mesh: str, timeout: float = 2.0) -> Prices:
    """Every site's latest price in one stream read (empty when there is no bucket yet)."""
    return Prices(await _BUCKET.read(nc, mesh, timeout))
