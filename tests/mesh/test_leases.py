"""The lease store on a real JetStream KV bucket: CAS semantics, expiry markers, tokens."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.nats_servers import Node
from support.waiting import wait_until

from harmony.mesh.connection import MeshConnection
from harmony.mesh.leases import (
    UNKNOWN_HOLDER,
    BucketMismatch,
    LeaseConflict,
    LeaseEntry,
    LeaseHolder,
    LeaseStore,
)
from harmony.mesh.subjects import lease_stream


@pytest.fixture
def conn(make_nats_server: Callable[..., Node]) -> Iterator[MeshConnection]:
    node = make_nats_server()
    c = MeshConnection([node.client_url], "lease-test").start()
    try:
        c.wait_connected(10)
        yield c
    finally:
        c.close()


@pytest.fixture
def store(conn: MeshConnection) -> LeaseStore:
    s = LeaseStore(conn, "t", ttl=1.0, replicas=1)
    s.ensure_bucket("w")
    return s


def holder(site: str) -> LeaseHolder:
    return LeaseHolder(site=site, incarnation="i", workload="w", wall=time.time())


def test_create_renew_and_conflicts(store: LeaseStore) -> None:
    assert store.read("w") is None
    r1 = store.acquire("w", holder("a"))
    with pytest.raises(LeaseConflict):
        store.acquire("w", holder("b"))  # held: create-if-absent refuses
    r2 = store.renew("w", holder("a"), r1)
    assert r2 > r1
    with pytest.raises(LeaseConflict):
        store.renew("w", holder("a"), r1)  # a stale revision is refused
    entry = store.read("w")
    assert entry is not None and entry.revision == r2
    assert entry.holder is not None and entry.holder.site == "a"


def test_expiry_leaves_a_marker_to_take_over_and_tokens_grow(store: LeaseStore) -> None:
    r1 = store.acquire("w", holder("a"))
    gone = wait_until(
        lambda: (e := store.read("w")) is not None and e.holder is None and e,
        10,
        message="the lease never expired",
    )
    assert gone.reason in ("expired", "purged") and gone.revision > r1
    with pytest.raises(LeaseConflict):
        store.acquire("w", holder("b"))  # plain create does not step over the marker
    r2 = store.acquire("w", holder("b"), over=gone.revision)
    assert r2 > gone.revision > r1


def test_release_lets_the_next_holder_in_at_once(store: LeaseStore) -> None:
    r1 = store.acquire("w", holder("a"))
    store.release("w", r1)
    gone = store.read("w")
    assert gone is not None and gone.holder is None and gone.reason == "deleted"
    assert store.acquire("w", holder("b"), over=gone.revision) > r1


def test_watch_reports_changes_including_expiry(store: LeaseStore) -> None:
    seen = []
    handle = store.watch("w", seen.append)
    try:
        store.acquire("w", holder("a"))
        wait_until(lambda: any(e.holder and e.holder.site == "a" for e in seen), 10)
        wait_until(lambda: any(e.holder is None for e in seen), 10, message="expiry not seen")
    finally:
        handle.cancel()


# -- sites that disagree on the bucket ---------------------------------------------------------


def test_a_bucket_made_with_another_ttl_is_refused_naming_both(conn: MeshConnection) -> None:
    LeaseStore(conn, "m", ttl=8.0, replicas=1).ensure_bucket("w")
    LeaseStore(conn, "m", ttl=8.0, replicas=1).ensure_bucket("w")  # same timings: binds
    with pytest.raises(BucketMismatch) as caught:
        LeaseStore(conn, "m", ttl=4.0, replicas=1).ensure_bucket("w")
    e = caught.value
    assert e.bucket == "harmony-m-lease-w"
    got = {s.name: (s.bucket, s.ours) for s in e.settings}
    assert got == {"max_age": (8.0, 4.0), "limit marker TTL": (8.0, 4.0)}
    assert "max_age 8 s (this site: 4 s)" in str(e)


def test_a_bucket_with_other_replicas_is_refused(conn: MeshConnection) -> None:
    LeaseStore(conn, "r", ttl=2.0, replicas=1).ensure_bucket("w")
    with pytest.raises(BucketMismatch, match=r"replicas 1 \(this site: 3\)") as caught:
        LeaseStore(conn, "r", ttl=2.0, replicas=3).ensure_bucket("w")
    assert [s.name for s in caught.value.settings] == ["replicas"]


def test_two_sites_creating_the_bucket_at_once_one_is_refused(conn: MeshConnection) -> None:
    """Both see no bucket and create it in the same moment: the server keeps one config; the
    other site must find out (it gets "exists with another configuration", or binds)."""
    for round_ in range(4):
        mesh = f"race{round_}"
        stores = [LeaseStore(conn, mesh, ttl=ttl, replicas=1) for ttl in (2.0, 3.0)]
        start = threading.Barrier(2)
        outcome: dict[float, str] = {}

        def ensure(s: LeaseStore, start: threading.Barrier, outcome: dict[float, str]) -> None:
            start.wait(10)
            try:
                s.ensure_bucket("w")
                outcome[s.ttl] = "ok"
            except BucketMismatch as e:
                outcome[s.ttl] = str(e)

        threads = [threading.Thread(target=ensure, args=(s, start, outcome)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(v == "ok" for v in outcome.values()) == [False, True], outcome


# -- unreadable values -------------------------------------------------------------------------


@pytest.mark.parametrize("garbage", [b"\xff\xfe not json", b'{"site": 1}', b"[]"])
def test_an_unreadable_lease_is_held_by_someone_unknown(store: LeaseStore, garbage: bytes) -> None:
    seen: list[LeaseEntry] = []
    handle = store.watch("w", seen.append)
    try:
        kv = store.kv("w")
        rev = store.conn.run(lambda nc: kv.put("w", garbage), 5)
        entry = store.read("w")
        assert entry is not None and entry.revision == rev
        assert entry.holder is UNKNOWN_HOLDER and entry.reason == "unreadable"
        with pytest.raises(LeaseConflict):
            store.acquire("w", holder("b"))  # and nobody creates over it
        wait_until(
            lambda: any(e.holder is UNKNOWN_HOLDER for e in seen), 10, message=lambda: repr(seen)
        )
        assert not any(e.holder is None for e in seen), "a watcher saw it gone"
    finally:
        handle.cancel()


# -- each lease's stream follows its holder -------------------------------------------------


def test_lead_moves_a_lease_streams_leader_to_the_holders_server(
    nats_cluster: list[Node],
) -> None:
    """Three routed servers, an R3 lease bucket per workload: each holder asks for its own
    stream to be led from its server, and JetStream moves it there (the others untouched)."""
    conns = {n.name: MeshConnection([n.client_url], f"lead-{n.name}").start() for n in nats_cluster}
    try:
        for c in conns.values():
            c.wait_connected(10)
        stores = {
            name: LeaseStore(c, "lead", ttl=8.0, replicas=3, server=name)
            for name, c in conns.items()
        }
        names = sorted(stores)
        for name in names:  # workload "w-<server>" held by that server's site
            stores[name].ensure_bucket(f"w-{name}")
            stores[name].acquire(f"w-{name}", holder(name))

        def leader(workload: str) -> str | None:
            async def info(nc: Any) -> str | None:
                si = await nc.jetstream().stream_info(lease_stream("lead", workload))
                return si.cluster.leader if si.cluster is not None else None

            result: str | None = conns[names[0]].run(info, 5)
            return result

        for name in names:  # a replica just created may not be current yet: then no ask
            said = wait_until(
                lambda n=name: (
                    (r := stores[n].lead(f"w-{n}").result(10)).startswith("not current") is False
                    and r
                ),
                20,
                message=f"{name}'s replica never current",
                interval=0.5,
            )
            assert said == "here" or said.startswith("moved from"), said
        for name in names:
            wait_until(lambda n=name: leader(f"w-{n}") == n, 20, message=f"w-{name} led by {name}")
        # Asking again where it already is changes nothing.
        assert stores[names[0]].lead(f"w-{names[0]}").result(10) == "here"
    finally:
        for c in conns.values():
            c.close()


def test_lead_without_a_server_of_its_own_does_nothing(store: LeaseStore) -> None:
    """An edge's or an external server's agent (server None) never asks for a move."""
    store.acquire("w", holder("a"))
    assert store.lead("w").result(10) == "no server"
