"""Site summaries: the mesh-wide view without every agent hearing every other.

Each agent writes a small `SiteSummary` of itself every `SUMMARY_INTERVAL` seconds into the
mesh's KV bucket ``harmony-<mesh>-sites`` (key: the site; the lease bucket's replicas). An
operator reads every site's summary in one stream read (`read_all`: an ordered consumer
delivering the last value per key), so `harmony status` answers at a thousand sites without
asking a thousand agents.

A summary is kept after its site stops writing (the bucket's `max_age` is `KEEP`, a day, so a
site removed from the mesh goes eventually): a dead site must show as *stale* with the age
of its last word, not vanish from the view. The reader tells stale from fresh by the
server's time of the write (`STALE_AFTER` intervals), so agents' clocks do not matter.

The write is a plain publish on the key's subject (no acknowledgement awaited): a summary is
display, the writer never blocks, and a lost write is replaced a few seconds later. A site
may write only its own key (`harmony.security.permissions`).
"""

from __future__ import annotations

import logging
from typing import Annotated

import msgspec
from nats.aio.client import Client

from harmony.mesh.site_kv import Conn, SiteKeyedBucket, SiteKeyWriter
from harmony.mesh.wire import Count, Finite, Labels, Name, Text

log = logging.getLogger(__name__)

SUMMARY_INTERVAL = 5.0
"""Seconds between two summaries of one site."""
STALE_AFTER = 3
"""A summary older than this many of its intervals is stale: its site stopped writing."""
KEEP = 86400.0
"""The bucket's max_age: how long the last summary of a site that went away stays."""
MAX_UNHEALTHY = 20
"""Unhealthy items a summary lists (it counts them all)."""
MAX_STATES = 16
MAX_PLACED = 256
"""Workload names a summary lists (`harmony status --workload W` finds W's sites by them)."""
MAX_VALUE_BYTES = 32768
"""A value larger than this is not a summary (the reader skips it before decoding)."""

State = Annotated[str, msgspec.Meta(pattern=r"\A[a-z][a-z0-9_-]{0,31}\Z")]
Counts = Annotated[dict[State, Count], msgspec.Meta(max_length=MAX_STATES)]


class Unhealthy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One thing an operator should look at: `what` (``workload web``, ``peer b``, an actor
    path) and `why` (``FENCE UNCONFIRMED: probe failed``, ``silent``, ``failed``)."""

    what: Text
    why: Text


class SiteSummary(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What one site says of itself, every few seconds. Bounded like every wire struct."""

    site: Name
    incarnation: Annotated[str, msgspec.Meta(pattern=r"\A[0-9A-Za-z_-]{0,64}\Z")]
    state: State
    """The agent's state: ``running`` (``failed``, ``stopping`` while it goes)."""
    wall: Finite
    """The site's wall clock at the write (display only; ages use the server's time)."""
    interval: Annotated[float, msgspec.Meta(gt=0, le=3600)] = SUMMARY_INTERVAL
    witness: bool = False
    workloads: Counts = {}
    """Workloads placed on this site, by the phase of this site's copy."""
    placed: Annotated[list[Name], msgspec.Meta(max_length=MAX_PLACED)] = []
    """The names of the workloads placed on this site."""
    peers: Counts = {}
    """The peers this site watches, by state (alive, suspect, silent, unknown)."""
    unhealthy: Annotated[list[Unhealthy], msgspec.Meta(max_length=MAX_UNHEALTHY)] = []
    unhealthy_total: Count = 0
    """How many unhealthy items in all (`unhealthy` lists at most MAX_UNHEALTHY)."""
    labels: Labels = {}
    """The site's labels (config ``labels``)."""
    site_capacity: Count | None = None
    """Config ``capacity``: copies of one workload the site takes."""


class Summary(msgspec.Struct, frozen=True):
    """A summary as the reader found it: the value and the server's age of the write."""

    value: SiteSummary
    age: float
    """Seconds since the server stored it."""

    @property
    def stale(self) -> bool:
        return self.age > STALE_AFTER * self.value.interval


_BUCKET = SiteKeyedBucket("sites", SiteSummary, MAX_VALUE_BYTES, KEEP)
bucket_name = _BUCKET.name
key_subject = _BUCKET.key_subject
encode = _BUCKET.encode
decode = _BUCKET.decode
bucket_config = _BUCKET.config
ensure_bucket = _BUCKET.ensure


def writer(conn: Conn, mesh: str, site: str, replicas: int) -> SiteKeyWriter[SiteSummary]:
    """Publishes this site's value to its key (creating the bucket when needed)."""
    return SiteKeyWriter(_BUCKET, conn, mesh, site, replicas)


async def read_all(nc: Client, mesh: str, timeout: float = 2.0) -> dict[str, Summary]:
    """Every site's latest summary in one stream read; {} when there is no bucket yet."""
    found = await _BUCKET.read(nc, mesh, timeout)
    return {key: Summary(value, age) for key, (value, age) in found.items()}
