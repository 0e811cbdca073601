"""A KV bucket with one key per site, written by that site alone and read whole.

Site summaries (`harmony.mesh.summaries`) and prices (`harmony.mesh.prices`) share this
shape: a site publishes its value on its own key's subject (a plain publish: a lost write is
replaced by the next, and `harmony.security.permissions` lets a site write no other key);
readers take every key's last value in one stream read. The bucket is created by whoever
comes first, and the first one's settings stay. A value is accepted only under its own
site's key: the subject is what the server vouches for.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, Protocol, TypeVar

import msgspec
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType

log = logging.getLogger(__name__)

ENSURE_STUCK = 15.0
"""Seconds after which a bucket ensure that has not finished fails (the next write retries)."""


class _OfASite(Protocol):
    @property
    def site(self) -> str: ...


class Conn(Protocol):
    """What a writer needs of `harmony.mesh.connection.MeshConnection` (named by shape, so
    that the permissions, which read these buckets' names, need not import the connection)."""

    @property
    def nc(self) -> Client | None: ...

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def publish(self, subject: str, data: bytes) -> None: ...


V = TypeVar("V", bound=_OfASite)
T = TypeVar("T")


class SiteKeyedBucket(Generic[V]):
    """``harmony-<mesh>-<suffix>``: values of type `kind`, at most `max_bytes` each, kept
    `keep` seconds after their site's last write."""

    def __init__(self, suffix: str, kind: type[V], max_bytes: int, keep: float) -> None:
        self.suffix, self.max_bytes, self.keep = suffix, max_bytes, keep
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(kind)

    def name(self, mesh: str) -> str:
        return f"harmony-{mesh}-{self.suffix}"

    def key_subject(self, mesh: str, site: str) -> str:
        """The subject `site` publishes its value on (its key in the bucket)."""
        return f"$KV.{self.name(mesh)}.{site}"

    def encode(self, value: V) -> bytes:
        return self._encoder.encode(value)

    def decode(self, data: bytes, key: str = "") -> V | None:
        """The value in `data`, or None for anything else (too large, malformed, out of
        bounds, or another site's than its key names)."""
        if not data or len(data) > self.max_bytes:
            return None
        try:
            value = self._decoder.decode(data)
        except msgspec.DecodeError:
            return None
        return value if not key or value.site == key else None

    def config(self, mesh: str, replicas: int) -> KeyValueConfig:
        return KeyValueConfig(
            bucket=self.name(mesh),
            history=1,
            ttl=self.keep,
            replicas=replicas,
            storage=StorageType.FILE,
            max_value_size=self.max_bytes,
        )

    async def ensure(self, nc: Client, mesh: str, replicas: int, timeout: float = 5.0) -> None:
        """Create the bucket unless it exists (idempotent across sites; the first one's
        settings stay: these values are display and advice, no reason to refuse a site)."""
        js = nc.jetstream(timeout=timeout)
        try:
            await js.stream_info(f"KV_{self.name(mesh)}")
            return
        except nats.js.errors.NotFoundError:
            pass
        try:
            await js.create_key_value(self.config(mesh, replicas))
        except nats.js.errors.BadRequestError:
            # Another site made it at the same moment, or it cannot be placed yet ("no
            # suitable peers for placement" while the cluster forms): only the first is
            # done. Taking the second for done lost every summary of a test's mesh for good.
            await js.stream_info(f"KV_{self.name(mesh)}")

    async def read(self, nc: Client, mesh: str, timeout: float = 2.0) -> dict[str, tuple[V, float]]:
        """{site: (value, seconds since the server stored it)}; {} with no bucket yet."""
        return await read_bucket(nc, self.name(mesh), self.decode, timeout)


class SiteKeyWriter(Generic[V]):
    """Publishes one site's value to its key from an actor's thread, never blocking it: the
    bucket is created in the background (once at a time) until it exists, and a write
    before that is simply lost, like any other lost write."""

    def __init__(
        self, bucket: SiteKeyedBucket[V], conn: Conn, mesh: str, site: str, replicas: int
    ) -> None:
        self.bucket, self.conn, self.mesh, self.site, self.replicas = (
            bucket,
            conn,
            mesh,
            site,
            replicas,
        )
        self.ready = False
        self._ensuring: Future[None] | None = None
        self.failures = 0

    def publish(self, value: V) -> None:
        if not self.ready:
            self._ensure()
        self.conn.publish(self.bucket.key_subject(self.mesh, self.site), self.bucket.encode(value))

    def _ensure(self) -> None:
        if self._ensuring is not None and not self._ensuring.done():
            return
        conn, bucket, mesh, replicas = self.conn, self.bucket, self.mesh, self.replicas

        async def ensure() -> None:
            nc = conn.nc
            if nc is None or not nc.is_connected:
                raise ConnectionError("not connected")
            # Each step has its own timeout, yet an ensure once never finished and none was
            # retried: the whole is bounded too, so the next write asks again.
            await asyncio.wait_for(bucket.ensure(nc, mesh, replicas), ENSURE_STUCK)

        def done(fut: Future[None]) -> None:
            if fut.cancelled():
                return
            err = fut.exception()
            if err is None:
                self.ready = True
                if self.failures:
                    log.info("%s bucket ready after %d tries", bucket.suffix, self.failures + 1)
                return
            self.failures += 1
            # Once at info (a first write often comes before JetStream is up), then debug.
            level = logging.INFO if self.failures == 1 else logging.DEBUG
            log.log(level, "%s bucket not there yet: %r", bucket.suffix, err)

        self._ensuring = asyncio.run_coroutine_threadsafe(ensure(), conn.loop)
        self._ensuring.add_done_callback(done)


async def read_bucket(
    nc: Client, bucket: str, decode: Callable[[bytes, str], T | None], timeout: float = 2.0
) -> dict[str, tuple[T, float]]:
    """{key: (value, seconds since the server stored it)} of every key of `bucket` whose
    value `decode` accepts, in one stream read; {} when there is no bucket yet.

    An ordered consumer delivers the last message of every key (`KeyValue.watch` without
    history); the read ends at the message after which the server says nothing is pending.
    nats-py's "initial values done" marker (None) is not trusted: it compares the consumer's
    pending count with the messages its callback has taken, and when the server has pushed
    every message before the client took the first (a thousand summaries over TLS), it
    comes *first* and would end the read empty (`harmony status` at 1,000 sites, 1 run in
    2: bench/status.py). So deletes are read too (the last message of a deleted key is its
    delete marker, and may be the one that ends the read), and skipped here."""
    js = nc.jetstream(timeout=timeout)
    try:
        info = await js.stream_info(f"KV_{bucket}")
    except nats.js.errors.NotFoundError:
        return {}
    if not info.state.messages:
        return {}  # nothing will come, and nothing would end the read
    kv = await js.key_value(bucket)
    out: dict[str, tuple[T, float]] = {}
    now = dt.datetime.now(dt.UTC)
    watcher = await kv.watch(">")
    try:
        async with asyncio.timeout(timeout):
            async for entry in watcher:
                if entry is None:
                    continue  # nats-py's marker: see above
                if entry.operation is None:  # a value, not a delete or purge marker
                    value = decode(entry.value or b"", entry.key)
                    if value is not None:
                        out[entry.key] = (value, age(entry.created, now))
                if not entry.delta:  # nothing pending after this one
                    break
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    return dict(sorted(out.items()))


def age(created: object, now: dt.datetime) -> float:
    """Seconds since the server stored a message (nats-py types `created` as an int but
    gives the metadata's datetime)."""
    if isinstance(created, dt.datetime):
        when = created if created.tzinfo else created.replace(tzinfo=dt.UTC)
        return max(0.0, (now - when).total_seconds())
    return 0.0
