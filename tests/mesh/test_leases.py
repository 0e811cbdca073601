"""The lease store on a real JetStream KV bucket: CAS semantics, expiry markers, tokens."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from conftest import Node, wait_until

from harmony.mesh.connection import MeshConnection
from harmony.mesh.leases import LeaseConflict, LeaseHolder, LeaseStore


@pytest.fixture
def store(make_nats_server: Callable[..., Node]) -> Iterator[LeaseStore]:
    node = make_nats_server()
    conn = MeshConnection([node.client_url], "lease-test").start()
    conn.wait_connected(10)
    s = LeaseStore(conn, "t", ttl=1.0, replicas=1)
    s.ensure_bucket()
    yield s
    conn.close()


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
