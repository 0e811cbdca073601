"""Leases in a replicated JetStream KV bucket: create-if-absent, CAS renew, CAS release.

One bucket per exclusive workload (``harmony-<mesh>-lease-<workload>``), its key the workload's
name. The bucket's `max_age` is the lease TTL, so the *server* expires a lease `ttl` seconds
after its last write; with limit markers, watchers see the expiry as a marker entry. The KV
revision of a successful write is the fencing token: stream sequences only grow.

Why one bucket (one stream, one Raft group) per workload: a holder can renew only while its
stream has a leader, and a stream whose leader's server dies has none for a whole election
(4-9 s in nats-server, longer than the fence deadline). With one stream for every lease, the
death of whichever site led it fenced every healthy holder elsewhere. Each workload's stream
instead follows its holder (`lead`): the holder asks the leader to step down in favour of its
own server, so only the holder's own death leaves its stream leaderless -- and then there is
no healthy holder to fence. Moving the leader changes nothing in the safety argument: the new
leader expires the key by the stored message's timestamp, as any leader does. A step-down is
asked for only while the holder's replica is current, and asked again less and less often
while it does not land (`harmony.actors.lease`): a replica still catching up after a heal
loses the election its step-down starts, and asking again every few seconds kept the stream
leaderless, its holder's renewals failing, for as long as it went on (38 step-downs in 90 s).

What bites (see docs/design.md): reads may be stale, so only a successful CAS proves anything;
`update(last=None)` behaves like create, so we always pass `last`; nats-py's `create()` does
not step over a MaxAge marker, so `acquire` does that itself with `update(last=<marker>)`.

Every method blocks the *calling* thread (an actor's) and runs the NATS call on the loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType, StreamConfig
from nats.js.kv import KV_DEL, KV_MARKER_REASON, KV_OP, KV_PURGE, KeyValue

from harmony.mesh.connection import MeshConnection
from harmony.mesh.subjects import lease_bucket

log = logging.getLogger(__name__)


class LeaseError(Exception):
    """Base of lease failures."""


class LeaseConflict(LeaseError):
    """The CAS was refused: someone else wrote the key (or our revision is stale)."""


class LeaseUnavailable(LeaseError):
    """The write could not be committed in time (no quorum, no connection, leader election)."""


class BucketMismatch(LeaseError):
    """The mesh's lease bucket was made with other settings than this site's: the sites
    disagree on the lease timings, so neither side's safety argument holds for both."""

    def __init__(self, bucket: str, settings: list[BucketSetting]) -> None:
        self.bucket = bucket
        self.settings = settings
        said = ", ".join(
            f"{s.name} {s.show(s.bucket)} (this site: {s.show(s.ours)})" for s in settings
        )
        super().__init__(f"lease bucket {bucket} has {said}")


@dataclass(frozen=True)
class BucketSetting:
    """One setting of the bucket that differs from what this site would have created."""

    name: str
    """"max_age", "replicas" or "limit marker TTL"."""
    bucket: float | None
    """What the bucket has (None: not set)."""
    ours: float
    unit: str = " s"

    def show(self, value: float | None) -> str:
        return "none" if value is None else f"{value:g}{self.unit}"


class LeaseHolder(msgspec.Struct, frozen=True):
    """The value of a lease key: who holds it."""

    site: str
    incarnation: str
    workload: str
    wall: float


UNKNOWN_HOLDER = LeaseHolder(site="?", incarnation="?", workload="?", wall=0.0)
"""The holder of a lease whose value nobody can read. Unreadable must mean "held by someone
unknown", never "gone": a standby that took it for gone would start a second copy. "?" is no
valid site name, so no site mistakes it for itself."""


@dataclass(frozen=True)
class LeaseEntry:
    """What the bucket says about a key. `holder` None: deleted, expired or never written."""

    revision: int
    holder: LeaseHolder | None
    reason: str = ""
    """For a gone lease: "deleted", "expired" (MaxAge marker) or "purged"; for a held one
    whose value cannot be decoded: "unreadable" (holder `UNKNOWN_HOLDER`)."""


_holder_decoder = msgspec.json.Decoder(LeaseHolder)
_STREAM_EXISTS_OTHERWISE = 10058
"""JetStream: "stream name already in use with a different configuration"."""


def _entry_from(revision: int, data: bytes, headers: dict[str, str] | None) -> LeaseEntry:
    headers = headers or {}
    marker = headers.get(KV_MARKER_REASON)
    op = headers.get(KV_OP)
    if marker or op in (KV_DEL, KV_PURGE) or not data:
        reason = "expired" if marker == "MaxAge" else ("deleted" if op == KV_DEL else "purged")
        return LeaseEntry(revision, None, reason)
    try:
        holder = _holder_decoder.decode(data)
    except msgspec.DecodeError:  # ValidationError included
        return LeaseEntry(revision, UNKNOWN_HOLDER, "unreadable")
    return LeaseEntry(revision, holder)


class LeaseStore:
    """The lease buckets of one mesh's exclusive workloads, used from actor threads. A key is
    a workload's name; `own` are the keys of workloads whose topology names this site (it may
    create their buckets; the others it only binds to, once a site of theirs made them);
    `server` is this site's nats-server (None: an edge's, or an external one), where `lead`
    moves the leader of the stream of a lease held here."""

    def __init__(
        self,
        conn: MeshConnection,
        mesh: str,
        ttl: float,
        replicas: int = 3,
        op_timeout: float = 2.0,
        server: str | None = None,
        own: Iterable[str] | None = None,
    ) -> None:
        self.conn = conn
        self.own = None if own is None else frozenset(own)
        """None: every key is this site's to create (tests, a mesh without permissions)."""
        self.mesh = mesh
        self.ttl = ttl
        self.replicas = replicas
        self.op_timeout = op_timeout
        self.server = server
        self._kvs: dict[str, KeyValue] = {}

    def bucket(self, key: str) -> str:
        return lease_bucket(self.mesh, key)

    # ------------------------------------------------------------------ setup
    def ensure_buckets(self, keys: Iterable[str], timeout: float = 30.0) -> None:
        """`ensure_bucket` for each key."""
        for key in keys:
            self.ensure_bucket(key, timeout)

    def ensure_bucket(self, key: str, timeout: float = 30.0) -> None:
        """Create `key`'s bucket (idempotent across sites) or bind to it, and refuse one whose
        settings differ from ours (`BucketMismatch`): its max_age is every holder's TTL."""
        bucket = self.bucket(key)
        cfg = KeyValueConfig(
            bucket=bucket,
            history=1,
            ttl=self.ttl,
            replicas=self.replicas,
            storage=StorageType.FILE,
            limit_marker_ttl=self.marker_ttl,
        )
        stream = f"KV_{bucket}"

        may_create = self.own is None or key in self.own

        async def ensure(nc: Client) -> KeyValue:
            js = nc.jetstream(timeout=self.op_timeout)
            try:
                info = await js.stream_info(stream)
            except nats.js.errors.NotFoundError:
                if not may_create:
                    raise LeaseUnavailable(
                        f"{bucket} is not made yet (a site of its topology makes it)"
                    ) from None
                try:
                    await js.create_key_value(cfg)
                except nats.js.errors.APIError as e:
                    if getattr(e, "err_code", None) != _STREAM_EXISTS_OTHERWISE:
                        raise
                    # another site created it in the same moment, with other settings
                info = await js.stream_info(stream)
            self._check(bucket, info.config)
            return await js.key_value(bucket)

        self._kvs[key] = self._call(ensure, timeout)

    @property
    def marker_ttl(self) -> float:
        """How long an expiry marker stays (the server wants at least 1 s)."""
        return max(1.0, self.ttl)

    def _check(self, bucket: str, config: StreamConfig) -> None:
        found = [
            BucketSetting("max_age", config.max_age, self.ttl),
            BucketSetting("replicas", config.num_replicas, self.replicas, unit=""),
            BucketSetting("limit marker TTL", config.subject_delete_marker_ttl, self.marker_ttl),
        ]
        differ = [
            s for s in found if s.bucket is None or not math.isclose(s.bucket, s.ours, abs_tol=1e-3)
        ]
        if differ:
            raise BucketMismatch(bucket, differ)

    def _call(self, fn: Callable[[Client], Any], timeout: float | None = None) -> Any:
        try:
            return self.conn.run(fn, timeout or self.op_timeout + 0.5)
        except (TimeoutError, nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
            raise LeaseUnavailable(f"{type(e).__name__}: {e}") from None
        except nats.js.errors.KeyWrongLastSequenceError as e:
            raise LeaseConflict(str(e)) from None
        except nats.js.errors.APIError as e:
            if getattr(e, "err_code", None) in (10071, 10164):
                raise LeaseConflict(str(e)) from None
            raise LeaseUnavailable(f"{type(e).__name__}: {e}") from None
        except nats.errors.Error as e:
            # Every other client error (no stream response, closed connection, full
            # buffers, ...) means the same to a lease holder: not committed, maybe later.
            raise LeaseUnavailable(f"{type(e).__name__}: {e}") from None

    def kv(self, key: str) -> KeyValue:
        if key not in self._kvs:
            self.ensure_bucket(key)
        return self._kvs[key]

    # ------------------------------------------------------------------ operations
    def read(self, key: str) -> LeaseEntry | None:
        """The latest entry for `key` (possibly stale), including markers; None if never."""
        self.kv(key)  # the bucket must exist
        bucket = self.bucket(key)

        async def read(nc: Client) -> LeaseEntry | None:
            js = nc.jetstream(timeout=self.op_timeout)
            try:
                msg = await js.get_last_msg(f"KV_{bucket}", f"$KV.{bucket}.{key}")
            except nats.js.errors.NotFoundError:
                return None
            return _entry_from(msg.seq or 0, msg.data or b"", msg.headers)

        result: LeaseEntry | None = self._call(read)
        return result

    def acquire(self, key: str, holder: LeaseHolder, over: int | None = None) -> int:
        """Take the lease: create it, or CAS over the gone entry at revision `over`.

        Returns the new revision (the fencing token). `LeaseConflict` if someone holds it.
        """
        kv, value = self.kv(key), msgspec.json.encode(holder)

        async def create(nc: Client) -> int:
            # last=0 means "no message for this key"; last=over steps over a marker.
            rev: int = await kv.update(key, value, last=over or 0)
            return rev

        rev: int = self._call(create)
        return rev

    def renew(self, key: str, holder: LeaseHolder, revision: int) -> int:
        kv, value = self.kv(key), msgspec.json.encode(holder)

        async def renew(nc: Client) -> int:
            new: int = await kv.update(key, value, last=revision)
            return new

        new: int = self._call(renew)
        return new

    def watch(self, key: str, on_entry: Callable[[LeaseEntry], None]) -> Future[None]:
        """Call `on_entry` (on the loop thread) for every change of `key`, expiry markers
        included, until the returned future is cancelled. Re-watches after errors."""
        kv = self.kv(key)

        async def watch() -> None:
            while True:
                try:
                    watcher = await kv.watch(key)
                    async for e in watcher:
                        if e is None:
                            continue  # the end of the initial values
                        headers = {KV_OP: e.operation} if e.operation else None
                        on_entry(_entry_from(e.revision or 0, e.value or b"", headers))
                except asyncio.CancelledError:
                    raise
                except Exception as err:  # the owner polls meanwhile
                    log.debug("lease watch on %s restarting: %s", key, err)
                    await asyncio.sleep(1.0)

        return asyncio.run_coroutine_threadsafe(watch(), self.conn.loop)

    def release(self, key: str, revision: int) -> None:
        """Delete the lease if we still hold `revision`; a standby may take it at once."""
        kv = self.kv(key)

        async def release(nc: Client) -> None:
            await kv.delete(key, last=revision)

        self._call(release)

    def lead(self, key: str) -> Future[str]:
        """Move the leader of `key`'s stream to this site's server, if it is a replica and the
        leader is elsewhere and this server's replica is current. Does not wait (a renewal
        must never queue behind it); the future says what happened: "here", "moved from
        <server>", "not a replica", "not current", "no server".

        A replica that is not current (catching up after a heal or a restart) cannot win the
        election a step-down starts: the old leader wins again, and the stream had no leader
        for nothing. So no step-down is asked for then."""
        stream, server = f"KV_{self.bucket(key)}", self.server

        async def lead() -> str:
            if not server:
                return "no server"
            nc = self.conn.nc
            assert nc is not None
            info = await nc.jetstream(timeout=self.op_timeout).stream_info(stream)
            cluster = info.cluster
            leader = cluster.leader if cluster is not None else None
            replicas = {r.name: r for r in (cluster.replicas or [])} if cluster is not None else {}
            if leader == server:
                return "here"
            mine = replicas.get(server)
            if mine is None:
                return "not a replica"
            if not mine.current or mine.offline or (mine.lag or 0) > 0:
                return f"not current (lag {mine.lag or 0})"
            body = json.dumps({"placement": {"preferred": server}}).encode()
            reply = await nc.request(
                f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", body, timeout=self.op_timeout
            )
            answer = json.loads(reply.data or b"{}")
            if "error" in answer:
                raise LeaseUnavailable(f"step-down of {stream} refused: {answer['error']}")
            return f"moved from {leader}"

        return asyncio.run_coroutine_threadsafe(lead(), self.conn.loop)
