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

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from typing import Annotated, TypeVar

import msgspec
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType

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


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SiteSummary)


def bucket_name(mesh: str) -> str:
    return f"harmony-{mesh}-sites"


def key_subject(mesh: str, site: str) -> str:
    """The subject a site publishes its summary on (its key in the bucket)."""
    return f"$KV.{bucket_name(mesh)}.{site}"


def encode(summary: SiteSummary) -> bytes:
    return _encoder.encode(summary)


def decode(data: bytes, key: str = "") -> SiteSummary | None:
    """The summary in `data`, or None for anything that is not one (too large, malformed,
    out of bounds, or a summary of another site than its key names)."""
    if not data or len(data) > MAX_VALUE_BYTES:
        return None
    try:
        summary = _decoder.decode(data)
    except msgspec.DecodeError:
        return None
    return summary if not key or summary.site == key else None


def bucket_config(mesh: str, replicas: int) -> KeyValueConfig:
    return KeyValueConfig(
        bucket=bucket_name(mesh),
        history=1,
        ttl=KEEP,
        replicas=replicas,
        storage=StorageType.FILE,
        max_value_size=MAX_VALUE_BYTES,
    )


async def ensure_bucket(nc: Client, mesh: str, replicas: int, timeout: float = 5.0) -> None:
    """Create the sites bucket unless it exists (idempotent across sites; the first one's
    settings stay: a summary is display, so a disagreement is no reason to refuse)."""
    js = nc.jetstream(timeout=timeout)
    try:
        await js.stream_info(f"KV_{bucket_name(mesh)}")
        return
    except nats.js.errors.NotFoundError:
        pass
    with contextlib.suppress(nats.js.errors.BadRequestError):  # another site, same moment
        await js.create_key_value(bucket_config(mesh, replicas))


async def read_all(nc: Client, mesh: str, timeout: float = 2.0) -> dict[str, Summary]:
    """Every site's latest summary in one stream read; {} when there is no bucket yet."""
    found = await read_bucket(nc, bucket_name(mesh), decode, timeout)
    return {key: Summary(value, age) for key, (value, age) in found.items()}


T = TypeVar("T")


async def read_bucket(
    nc: Client, bucket: str, decode: Callable[[bytes, str], T | None], timeout: float = 2.0
) -> dict[str, tuple[T, float]]:
    """{key: (value, seconds since the server stored it)} of every key of `bucket` whose
    value `decode` accepts, in one stream read; {} when there is no bucket yet (also used
    for the prices bucket, `harmony.mesh.prices`).

    An ordered consumer delivers the last value of every key (`KeyValue.watch` without
    history); the read ends when the server says nothing is pending."""
    js = nc.jetstream(timeout=timeout)
    try:
        kv = await js.key_value(bucket)
    except nats.js.errors.BucketNotFoundError:
        return {}
    out: dict[str, tuple[T, float]] = {}
    now = dt.datetime.now(dt.UTC)
    watcher = await kv.watch(">", ignore_deletes=True)
    try:
        async with asyncio.timeout(timeout):
            async for entry in watcher:
                if entry is None:
                    break
                value = decode(entry.value or b"", entry.key)
                if value is not None:
                    out[entry.key] = (value, _age(entry.created, now))
                if not entry.delta:  # nothing pending after this one
                    break
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    return dict(sorted(out.items()))


def _age(created: object, now: dt.datetime) -> float:
    """Seconds since the server stored a message (nats-py types `created` as an int but
    gives the metadata's datetime)."""
    if isinstance(created, dt.datetime):
        when = created if created.tzinfo else created.replace(tzinfo=dt.UTC)
        return max(0.0, (now - when).total_seconds())
    return 0.0
