"""LeaseActor on a real nats-server (JetStream KV): it takes the lease by CAS, reports the
token, renews, is refused on a stale revision, releases, and sees another site's lease come
and go. Every command is answered with exactly one event to its parent."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import msgspec
import pykka
import pytest
from support.actors import Kit, make_kit
from support.nats_servers import Node
from support.waiting import wait_until

from harmony.actors.lease import LEAD_BACKOFF_MAX, LEAD_EVERY, LeaseActor, Poll
from harmony.config import FailoverTopologyConfig, ProcessDriverConfig, WorkloadConfig
from harmony.mesh.connection import MeshConnection
from harmony.mesh.leases import LeaseStore
from harmony.strategies.commands import AcquireLease, ReleaseLease, RenewLease, WatchLease
from harmony.strategies.events import (
    AcquireFailed,
    LeaseAcquired,
    LeaseObservedGone,
    LeaseObservedHeld,
    LeaseRead,
    LeaseReleased,
    LeaseRenewed,
    ReleaseFailed,
    RenewRefused,
)

pytestmark = pytest.mark.mesh

PATH = "agent/workload/w/lease"
WORKLOAD = WorkloadConfig(
    name="w",
    driver=ProcessDriverConfig(command=["true"]),
    topology=FailoverTopologyConfig(primary="a", standbys=["b"]),
)


class Parent(pykka.ThreadingActor):
    """Stands in for the WorkloadSupervisor: keeps every lease event, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[object] = []

    def on_receive(self, message: Any) -> Any:
        if message == "read":
            return list(self.seen)
        self.seen.append(message)
        return None


@pytest.fixture
def store(make_nats_server: Callable[..., Node]) -> Iterator[LeaseStore]:
    node = make_nats_server()
    conn = MeshConnection([node.client_url], "lease-actor-test").start()
    try:
        conn.wait_connected(10)
        s = LeaseStore(conn, "t", ttl=30.0, replicas=1)
        s.ensure_bucket("w")
        yield s
    finally:
        pykka.ActorRegistry.stop_all()
        conn.close()


@pytest.fixture
def kits() -> Iterator[list[Kit]]:
    made: list[Kit] = []
    yield made
    for k in made:
        k.ctx.scheduler.stop()


def site(kits: list[Kit], name: str, store: LeaseStore | None) -> tuple[Any, Any, Kit]:
    """A lease actor of site `name` and the parent it reports to."""
    k = make_kit()
    k.ctx.config = msgspec.structs.replace(k.ctx.config, site=name)
    k.ctx.incarnation = f"{name}-1"
    k.ctx.leases = store
    kits.append(k)
    parent = Parent.start()
    return parent, LeaseActor.start(k.ctx, PATH, parent, WORKLOAD), k


def next_event(parent: Any, kind: type, after: int = 0) -> Any:
    """The first event of `kind` the parent got after its first `after` events."""
    return wait_until(
        lambda: next((e for e in parent.ask("read")[after:] if isinstance(e, kind)), None),
        15,
        message=lambda: f"no {kind.__name__}; got {parent.ask('read')}",
    )


def count(parent: Any) -> int:
    return len(parent.ask("read"))


def test_acquire_by_cas_reports_the_token_and_a_second_site_is_refused(
    store: LeaseStore, kits: list[Kit]
) -> None:
    pa, a, ka = site(kits, "a", store)
    pb, b, _ = site(kits, "b", store)
    n = count(pa)
    a.tell(AcquireLease(expected_revision=None, reason="test"))
    got = next_event(pa, LeaseAcquired, n)
    entry = store.read("w")
    assert entry is not None and entry.holder is not None
    assert (entry.holder.site, entry.revision) == ("a", got.revision)  # the token is the revision
    assert got.sent_at == ka.clock.now  # taken before the request left
    line = ka.ctx.board.get(PATH)
    assert line is not None and line.state == "held" and line.detail["token"] == str(got.revision)

    n = count(pb)
    b.tell(AcquireLease(expected_revision=None, reason="test"))
    refused = next_event(pb, AcquireFailed, n)
    assert refused.conflict


def test_renew_moves_the_token_and_a_stale_renewal_is_refused_with_a_read(
    store: LeaseStore, kits: list[Kit]
) -> None:
    pa, a, _ = site(kits, "a", store)
    n = count(pa)
    a.tell(AcquireLease(expected_revision=None, reason="test"))
    first = next_event(pa, LeaseAcquired, n).revision
    n = count(pa)
    a.tell(RenewLease(revision=first, reason="test"))
    renewed = next_event(pa, LeaseRenewed, n).revision
    assert renewed > first
    n = count(pa)
    a.tell(RenewLease(revision=first, reason="stale"))
    refused = next_event(pa, RenewRefused, n)
    assert refused.revision == first
    assert refused.read == LeaseRead(renewed, "a", True)  # ours, at the newer revision


def test_release_lets_another_site_see_it_gone_and_take_it_over_the_marker(
    store: LeaseStore, kits: list[Kit]
) -> None:
    pa, a, _ = site(kits, "a", store)
    pb, b, _ = site(kits, "b", store)
    n = count(pa)
    a.tell(AcquireLease(expected_revision=None, reason="test"))
    held = next_event(pa, LeaseAcquired, n).revision
    n = count(pb)
    b.tell(WatchLease(reason="test"))
    seen = next_event(pb, LeaseObservedHeld, n)
    assert (seen.holder, seen.revision) == ("a", held)

    n_a, n_b = count(pa), count(pb)
    a.tell(ReleaseLease(revision=held, reason="done"))
    next_event(pa, LeaseReleased, n_a)
    gone = next_event(pb, LeaseObservedGone, n_b)  # the KV watcher, not a poll: none runs
    assert gone.revision is not None and gone.revision > held

    n_b = count(pb)
    b.tell(AcquireLease(expected_revision=gone.revision, reason="take over"))
    taken = next_event(pb, LeaseAcquired, n_b)
    assert taken.revision > gone.revision  # tokens only grow


def test_a_release_of_a_revision_no_longer_ours_is_a_conflict(
    store: LeaseStore, kits: list[Kit]
) -> None:
    pa, a, _ = site(kits, "a", store)
    n = count(pa)
    a.tell(AcquireLease(expected_revision=None, reason="test"))
    held = next_event(pa, LeaseAcquired, n).revision
    n = count(pa)
    a.tell(ReleaseLease(revision=held + 100, reason="wrong"))
    failed = next_event(pa, ReleaseFailed, n)
    assert failed.conflict


def test_without_a_lease_store_every_acquire_fails_without_a_conflict(kits: list[Kit]) -> None:
    try:
        pa, a, _ = site(kits, "a", None)
        a.tell(AcquireLease(expected_revision=None, reason="test"))
        failed = next_event(pa, AcquireFailed)
        assert not failed.conflict and "no lease store" in failed.reason
    finally:
        pykka.ActorRegistry.stop_all()


class StepDownStore(LeaseStore):
    """The real store, whose leader moves never land (after a heal the holder's replica may
    lag and lose every election its step-down starts) until `answer` says "here"."""

    answer = "moved from b"
    asked = 0

    def lead(self, key: str) -> Future[str]:
        self.asked += 1
        done: Future[str] = Future()
        done.set_result(self.answer)
        return done


def polls(actor: Any, n: int) -> None:
    for _ in range(n):
        actor.ask(Poll())


def test_a_step_down_that_does_not_land_is_asked_for_less_and_less_often(
    store: LeaseStore, kits: list[Kit]
) -> None:
    """Each step-down leaves the stream leaderless for a moment: asked for every few polls
    while it never lands, it kept the holder's own renewals failing (38 in 90 s after a
    heal). Unlanded, the asks back off; once the leader is here, the normal pace returns."""
    leads = StepDownStore(store.conn, "t", ttl=30.0, replicas=1)
    pa, a, _ = site(kits, "a", leads)
    n = count(pa)
    a.tell(AcquireLease(expected_revision=None, reason="test"))
    next_event(pa, LeaseAcquired, n)
    polls(a, 12 * LEAD_EVERY)
    backed_off = leads.asked
    assert 2 <= backed_off <= 4, backed_off  # without the back-off: 13

    leads.answer = "here"
    polls(a, 2 * LEAD_EVERY * 2**LEAD_BACKOFF_MAX)  # the next ask, at most this far off
    before = leads.asked
    polls(a, 12 * LEAD_EVERY)
    assert leads.asked - before >= 11, (before, leads.asked)  # every LEAD_EVERY polls again
