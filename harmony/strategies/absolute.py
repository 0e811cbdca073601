"""AbsoluteConsistency (CP): at most one active copy, ever; act on the lease, never on silence.

* A site runs the active copy only while it holds the lease: acquired by CAS (token known) and
  ``now < t0 + lease_ttl - fence_margin``. At that deadline, without a later successful
  renewal, it fences. See `harmony.strategies.timing` for why that is enough.
* Every site watches the lease. When it is seen gone (expired or deleted), the live sites of
  the topology try to take it in topology order: the n-th live candidate (silent peers are
  skipped; suspect ones are not) waits ``n x rank_delay`` after the later of the lease seen
  gone and the last change of a site ahead. A site ahead never heard of holds the others back
  until it is heard of or declared silent (a lease TTL after boot): it may be booting.
  CAS decides races.
* The holder renews every renew_interval, and keeps trying after a fence: a renewal that still
  succeeds proves the lease was never taken, so the copy restarts here without a failover.
* Graceful shutdown: stop the copy (still renewing), then release the lease.
* No automatic failback: a standby that took over keeps the lease when the primary returns,
  unless `Params.failback` (then it hands over once the primary was alive failback_after s).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from harmony.strategies import events as ev
from harmony.strategies.base import COMMON_FOLDS, FailoverStrategy
from harmony.strategies.commands import (
    AcquireLease,
    Command,
    RecordEvent,
    ReleaseLease,
    RenewLease,
    WatchLease,
)
from harmony.strategies.lease_fold import LEASE_HANDLERS
from harmony.strategies.params import Params
from harmony.strategies.state import DriverView, Seen, WorkloadState
from harmony.strategies.tables import (
    AC_GOALS,
    LEASE_RULES,
    WORKLOAD_ACTIONS,
    AcFacts,
    Goal,
    LeaseAct,
    LeaseFacts,
    PeerStatus,
    Phase,
    first_match,
)
from harmony.strategies.timing import UnsafeTimings

replace = dataclasses.replace
BOOT_DOUBT = "boot: what an earlier incarnation of this site left is unknown"


class AbsoluteConsistency(FailoverStrategy):
    """Lease-fenced failover. Refuses unsafe timings unless ``check=False`` (tests only)."""

    name = "absolute-consistency"
    abbreviation = "AC"
    uses_lease = True

    def __init__(self, params: Params | None = None, *, check: bool = True, **timing: Any):
        super().__init__(params)
        if check:
            problems = self.params.timing_problems(**timing)
            if problems:
                raise UnsafeTimings(problems)

    def _boot(self, state: WorkloadState) -> Iterable[Command]:
        return (WatchLease("watch the lease from boot"),)

    def _boot_driver(self) -> DriverView:
        """What an earlier incarnation of this site left may still run: fence it (and learn
        that it is down) before this site takes part in any election."""
        return DriverView(phase=Phase.UNKNOWN, doubt=BOOT_DOUBT)

    # -- facts -----------------------------------------------------------------------------
    def rank(self, state: WorkloadState) -> int:
        """Our position among the live sites of the topology that the geo constraints do not
        bar (0: try first)."""
        return len(self.ahead(state))

    def ahead(self, state: WorkloadState) -> list[str]:
        """The live, eligible sites of the topology that try before us."""
        sites = state.topology.sites
        mine = sites.index(state.site) if state.site in sites else len(sites)
        return [s for s in sites[:mine] if state.live(s) and state.eligible(s)]

    def acquire_at(self, state: WorkloadState) -> float | None:
        """When we may try to take the lease, or None when we may not at all.

        A site ahead of us that was never heard of may be booting (and fencing what its
        last incarnation left) right now: wait until it is heard or declared silent
        (PeerWatch does so within a lease TTL). The rank delay runs from the later of the
        lease seen gone and the last change of a site ahead, so a primary that just came up
        gets its head start too.
        """
        lease = state.lease
        if state.leaving or lease.revision is not None or lease.seen is not Seen.GONE:
            return None
        since = lease.seen_since
        for site in self.ahead(state):
            peer = state.peers.get(site)
            if peer is None or peer.status is PeerStatus.UNKNOWN:
                return None
            since = max(since, peer.since)
        after_rank = since + self.rank(state) * self.params.rank_delay
        return max(after_rank, state.cooldown_until, lease.retry_at)

    # -- events (the rows of `folds`, below the class) ------------------------------------
    def _lease(
        self, state: WorkloadState, event: ev.LeaseEvent, now: float, out: list[Command]
    ) -> WorkloadState:
        """A lease answer or observation: `LEASE_HANDLERS` updates the lease facts."""
        return LEASE_HANDLERS[type(event)](state, event, self.params, now, out)

    def _lease_gone(
        self, state: WorkloadState, event: ev.LeaseObservedGone, now: float, out: list[Command]
    ) -> WorkloadState:
        """As `_lease`, and say when this site will try to take the lease."""
        state = self._lease(state, event, now, out)
        at = self.acquire_at(state)
        if at is not None:
            why = f"lease gone; rank {self.rank(state)} among live sites: try at {at:.3f}"
            out.append(RecordEvent("lease-gone", why))
        return state

    def _moving(self, state: WorkloadState, out: list[Command]) -> WorkloadState:
        if state.site == state.moved_to:  # the operator's choice: no cooldown holds it back
            return replace(state, cooldown_until=0.0)
        if state.lease.revision is not None and not state.leaving:
            out.append(RecordEvent("handover", f"moving to {state.moved_to}: handing over"))
            return replace(state, handing_over=True)
        return state

    def _copy_failed(self, state: WorkloadState, now: float, out: list[Command]) -> WorkloadState:
        state = super()._copy_failed(state, now, out)
        if state.lease.revision is not None and not state.leaving:
            out.append(RecordEvent("handover", "copy failed: handing the lease to a standby"))
            state = replace(state, handing_over=True)
        return state

    # -- rules -----------------------------------------------------------------------------
    def _act(self, state: WorkloadState, now: float, out: list[Command]) -> WorkloadState:
        p = self.params
        lease = state.lease
        if lease.pending is not None and now >= lease.pending_since + p.renew_interval:
            out.append(RecordEvent("lease-timeout", f"no answer to {lease.pending}; assume failed"))
            unconfirmed = lease.unconfirmed_since
            if lease.pending is LeaseAct.RENEW and unconfirmed is None:
                unconfirmed = lease.pending_since  # it may still land
            state = replace(
                state, lease=replace(lease, pending=None, unconfirmed_since=unconfirmed)
            )
        state = self._maybe_failback(state, now, out)

        lease, driver = state.lease, state.driver
        facts = AcFacts(
            active=driver.active,
            unknown=driver.unknown,
            valid=lease.valid(now, p.fence_offset),
            leaving=state.leaving,
            warm=state.topology.warm,
            cooling=now < state.cooldown_until,
        )
        goal, why = first_match(AC_GOALS, facts)
        act = WORKLOAD_ACTIONS.get((goal, driver.phase, driver.active))
        if act is not None and self._may_drive(state, act, now):
            explained = self._explain(state, goal, why)
            state, drive = self._drive(state, act, explained, now, lease.token)
            out.append(drive)

        lease = state.lease
        stale_at = self._stale_at(state)
        if stale_at is not None and now >= stale_at:  # expired without telling the watchers?
            lease = replace(lease, rewatch=True, seen_at=now)
            state = replace(state, lease=lease)
        if lease.rewatch:
            out.append(WatchLease("re-read the lease: our view of it is out of date"))
            lease = replace(lease, rewatch=False)
            state = replace(state, lease=lease)
        at = self.acquire_at(state)
        lf = LeaseFacts(
            pending=lease.pending is not None,
            holding=lease.revision is not None,
            leaving=state.leaving,
            stopped=state.driver.phase is Phase.STOPPED,
            due=now >= lease.next_attempt_at,
            retry_ok=now >= lease.retry_at,
            may_acquire=at is not None and now >= at and not state.driver.unknown,
        )
        request, why = first_match(LEASE_RULES, lf)
        cmd: Command
        match request, lease.revision:
            case LeaseAct.ACQUIRE, _:
                cmd = AcquireLease(lease.seen_revision, f"{why} (rank {self.rank(state)})")
            case LeaseAct.RENEW, int(revision):
                cmd = RenewLease(revision, f"{why}; fence deadline {self._deadline(state)}")
            case LeaseAct.RELEASE, int(revision):
                cmd = ReleaseLease(revision, why)
            case _:  # no request due (RENEW and RELEASE are only asked of a holder)
                return state
        out.append(cmd)
        lease = replace(lease, pending=request, pending_since=now)
        if request is LeaseAct.RENEW:
            lease = replace(lease, next_attempt_at=now + p.renew_interval)
        return replace(state, lease=lease)

    def _maybe_failback(
        self, state: WorkloadState, now: float, out: list[Command]
    ) -> WorkloadState:
        at = self._failback_at(state)
        if at is None or now < at or not state.lease.valid(now, self.params.fence_offset):
            return state
        out.append(RecordEvent("failback", f"primary {state.topology.primary} is back"))
        no_more = now + self.params.failback_after
        return replace(state, handing_over=True, no_failback_until=no_more)

    def _failback_at(self, state: WorkloadState) -> float | None:
        primary = state.topology.primary
        peer = state.peers.get(primary)
        if (
            not self.params.failback
            or state.site == primary
            or state.leaving
            or state.lease.revision is None
            or peer is None
            or peer.status is not PeerStatus.ALIVE
            or not state.eligible(primary)
        ):
            return None
        return max(peer.since + self.params.failback_after, state.no_failback_until)

    def _stale_at(self, state: WorkloadState) -> float | None:
        """When another site's lease, unrenewed for a whole TTL, should be read again.

        Holders renew every renew_interval, so silence that long means the key expired (a
        bucket without limit markers tells no watcher) or our watch broke.
        """
        lease = state.lease
        gone = state.shutting_down or state.handing_over  # a barred site keeps watching
        if lease.revision is not None or lease.seen is not Seen.HELD or gone:
            return None
        return lease.seen_at + self.params.lease_ttl

    def _deadline(self, state: WorkloadState) -> str:
        deadline = state.lease.deadline(self.params.fence_offset)
        return "none" if deadline is None else f"{deadline:.3f}"

    def _explain(self, state: WorkloadState, goal: Goal, why: str) -> str:
        lease = state.lease
        if goal is Goal.FENCED:
            if state.driver.doubt is not None:
                return f"{why} ({state.driver.doubt})"
            if lease.revision is None:
                return f"{why}: the lease is not ours"
            return f"{why}: no renewal since t0={lease.t0:.3f}, deadline {self._deadline(state)}"
        if goal is Goal.ACTIVE:
            return f"{why}: token {lease.token}, fence deadline {self._deadline(state)}"
        return why

    def _wake_times(self, state: WorkloadState, now: float) -> Iterable[float | None]:
        lease = state.lease
        yield lease.deadline(self.params.fence_offset)
        if lease.pending is not None:
            yield lease.pending_since + self.params.renew_interval
        elif lease.revision is not None:
            yield lease.next_attempt_at
            yield lease.retry_at
        else:
            yield self.acquire_at(state)
        yield state.cooldown_until
        yield self._failback_at(state)
        yield self._stale_at(state)
        yield self._fence_retry_at(state)


AbsoluteConsistency.folds = {
    **COMMON_FOLDS,
    **{event: AbsoluteConsistency._lease for event in LEASE_HANDLERS},
    ev.LeaseObservedGone: AbsoluteConsistency._lease_gone,
    ev.PeerCopiesSeen: AbsoluteConsistency._unchanged,  # reconciles nothing: one copy, ever
    ev.PartitionHealed: AbsoluteConsistency._unchanged,  # the lease decides, not the heal
}
