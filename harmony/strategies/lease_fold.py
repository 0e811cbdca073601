"""How lease answers and observations fold into `LeaseView` (AbsoluteConsistency's facts).

One handler per lease event, found through `LEASE_HANDLERS` (a table, so a lease event
leads to its handler by plain search). A handler only updates facts and explains them with
`RecordEvent`s; what to *do* about the facts is read from the tables in `tables`.

The rule every handler keeps: only a successful CAS proves the lease is ours, and only a
refusal that a read shows to be someone else's write proves it is not. A timed-out renewal
may have landed: it is remembered (`unconfirmed_since`), so that a later refusal caused by
that very write is adopted as a renewal instead of being taken for a loss, with the earliest
send time as its t0 (never later than the write).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Final

from harmony.strategies import events as ev
from harmony.strategies.commands import Command, RecordEvent
from harmony.strategies.params import Params
from harmony.strategies.state import LeaseView, Seen, WorkloadState
from harmony.strategies.tables import LeaseAct

replace = dataclasses.replace
Out = list[Command]


def seen(
    lease: LeaseView, what: Seen, holder: str | None, rev: int | None, now: float
) -> LeaseView:
    since = lease.seen_since if what is lease.seen else now
    return replace(
        lease, seen=what, seen_holder=holder, seen_revision=rev, seen_since=since, seen_at=now
    )


def not_holding(state: WorkloadState, p: Params, now: float) -> WorkloadState:
    """Forget revision, token and t0; a handover is over (it gives better sites a turn)."""
    lease = replace(state.lease, revision=None, token=None, t0=None, unconfirmed_since=None)
    cooldown = state.cooldown_until
    if state.handing_over:
        turn = len(state.topology.sites) * p.rank_delay
        cooldown = max(cooldown, now + turn)
    return replace(state, lease=lease, handing_over=False, cooldown_until=cooldown)


def drop(state: WorkloadState, p: Params, why: str, now: float, out: Out) -> WorkloadState:
    """The lease is not ours (any more): forget it; the goal table then fences the copy.

    A request in flight stays pending: its answer (or its timeout) still comes.
    """
    out.append(RecordEvent("lease-lost", why))
    return not_holding(state, p, now)


def _answered(lease: LeaseView, act: LeaseAct) -> LeaseView:
    return replace(lease, pending=None) if lease.pending is act else lease


# -- answers to our requests -------------------------------------------------------------------
def acquired(
    s: WorkloadState, e: ev.LeaseAcquired, p: Params, now: float, out: Out
) -> WorkloadState:
    lease = s.lease
    if lease.revision is not None:
        out.append(RecordEvent("lease-ignored", f"acquire answer {e} while holding"))
        return s
    lease = seen(lease, Seen.HELD, s.site, e.revision, now)
    lease = replace(
        lease,
        revision=e.revision,
        token=e.revision,
        t0=e.sent_at,
        pending=None,
        unconfirmed_since=None,
        next_attempt_at=e.sent_at + p.renew_interval,
    )
    why = f"lease acquired, token {e.revision}; fence deadline {e.sent_at + p.fence_offset:.3f}"
    out.append(RecordEvent("lease-acquired", why))
    return replace(s, lease=lease)


def acquire_failed(
    s: WorkloadState, e: ev.AcquireFailed, p: Params, now: float, out: Out
) -> WorkloadState:
    lease = replace(s.lease, pending=None, retry_at=now + p.rank_delay)
    out.append(RecordEvent("acquire-failed", e.reason))
    if e.conflict:  # someone moved first, or the marker we aimed at is gone
        lease = replace(lease, seen=Seen.UNKNOWN, seen_since=now, rewatch=True)
    return replace(s, lease=lease)


def renewed(s: WorkloadState, e: ev.LeaseRenewed, p: Params, now: float, out: Out) -> WorkloadState:
    lease = _answered(s.lease, LeaseAct.RENEW)
    if lease.revision is None or e.revision <= lease.revision:
        return replace(s, lease=lease)
    if lease.t0 is not None and now >= lease.t0 + p.fence_offset + p.stop_grace:
        return landed_too_late(replace(s, lease=lease), e.revision, p, now, out)
    was_valid = lease.valid(now, p.fence_offset)
    t0 = max(lease.t0 or e.sent_at, e.sent_at)
    lease = replace(lease, revision=e.revision, t0=t0, unconfirmed_since=None)
    if not was_valid and lease.valid(now, p.fence_offset):
        # The copy of the old token was fenced at the deadline: the next one starts with a
        # token no earlier copy ever had, so a guard can tell the two apart.
        lease = replace(lease, token=e.revision)
        why = f"renewed after the fence deadline: token now {e.revision}"
        out.append(RecordEvent("lease-renewed", why))
    return replace(s, lease=lease)


def landed_too_late(
    s: WorkloadState, revision: int, p: Params, now: float, out: Out
) -> WorkloadState:
    """A renewal answered (or found) after our previous write may have expired: not a lease
    to run on. It may have landed on a message that had already expired, and nats-server
    then places that message's expiry marker (a rollup) *after* ours, so the key is gone
    and a standby takes it while we would start: seen in CI (agent-kill-grandchild: our
    renewal stored 11 ms after the message it replaced expired, the marker 0.27 s later, a
    copy of ours alive 20 ms beside the new holder's). The bound: the safety inequality
    (`check_timings`) puts t0 + fence_offset + stop_grace before our previous write's
    expiry on any server clock, so a renewal answered earlier landed in time. Later, we
    let it go: our value there expires (or is rolled up) and the rank order decides."""
    why = f"renewal to {revision} answered after our last write may have expired"
    state = drop(s, p, why, now, out)
    return replace(state, lease=seen(state.lease, Seen.HELD, s.site, revision, now))


def renew_failed(
    s: WorkloadState, e: ev.RenewFailed, p: Params, now: float, out: Out
) -> WorkloadState:
    lease = _answered(s.lease, LeaseAct.RENEW)
    if e.sent_at is not None and lease.unconfirmed_since is None and lease.revision is not None:
        lease = replace(lease, unconfirmed_since=e.sent_at)
    deadline = lease.deadline(p.fence_offset)
    out.append(RecordEvent("renew-failed", f"{e.reason}; fence deadline {deadline}"))
    return replace(s, lease=lease)


def renew_refused(
    s: WorkloadState, e: ev.RenewRefused, p: Params, now: float, out: Out
) -> WorkloadState:
    """A refusal proves a loss only when nothing of ours is unconfirmed, or a read shows
    someone else's value past our revision; our own value there is a late write of ours."""
    lease = s.lease
    if lease.revision is None:
        return replace(s, lease=_answered(lease, LeaseAct.RENEW))
    if e.revision < lease.revision:
        # A stale queued renewal: a newer one of ours already succeeded past it.
        out.append(RecordEvent("renew-stale", f"refusal of renewal at {e.revision} ignored"))
        return s
    read = e.read
    # An absent key holds no value of ours, and no renewal of ours can land on it later (each
    # is a CAS against our revision): lost, whatever is unconfirmed. Waiting for a "newer"
    # read instead waited forever once the key's marker had aged out.
    if lease.unconfirmed_since is not None and not (read is not None and read.absent):
        if read is None or read.revision <= e.revision:
            what = "lease unreadable" if read is None else "read not newer than ours yet"
            return renew_failed(
                s, ev.RenewFailed(f"renewal refused ({e.reason}); {what}"), p, now, out
            )
        if read.ours:
            adopted = ev.LeaseRenewed(read.revision, lease.unconfirmed_since)
            out.append(
                RecordEvent("renew-adopted", f"our timed-out renewal landed at {read.revision}")
            )
            return renewed(s, adopted, p, now, out)
    state = drop(s, p, f"renewal refused: {e.reason}", now, out)
    state = replace(state, lease=_answered(state.lease, LeaseAct.RENEW))
    if read is not None and read.holder is not None and not read.ours:
        return replace(state, lease=seen(state.lease, Seen.HELD, read.holder, read.revision, now))
    return replace(state, lease=replace(state.lease, rewatch=True))


def lost(s: WorkloadState, e: ev.LeaseLost, p: Params, now: float, out: Out) -> WorkloadState:
    if s.lease.revision is None:
        return s
    state = drop(s, p, f"lease lost: {e.reason}", now, out)
    state = replace(state, lease=_answered(state.lease, LeaseAct.RENEW))
    if e.holder is not None and e.revision is not None:
        return replace(state, lease=seen(state.lease, Seen.HELD, e.holder, e.revision, now))
    return replace(state, lease=replace(state.lease, rewatch=True))


def released(
    s: WorkloadState, e: ev.LeaseReleased, p: Params, now: float, out: Out
) -> WorkloadState:
    out.append(RecordEvent("lease-released", "lease released"))
    return after_release(s, p, now)


def release_failed(
    s: WorkloadState, e: ev.ReleaseFailed, p: Params, now: float, out: Out
) -> WorkloadState:
    if e.conflict:
        out.append(RecordEvent("lease-released", f"lease already gone: {e.reason}"))
        return after_release(s, p, now)
    out.append(RecordEvent("release-failed", e.reason))
    return replace(s, lease=replace(s.lease, pending=None, retry_at=now + p.renew_interval))


def after_release(state: WorkloadState, p: Params, now: float) -> WorkloadState:
    """Released: what the bucket holds now is unknown until a fresh observation, so ask for
    one. (The watch may have reported the deletion before the release's answer came; a lease
    actor reports only changes, so without a re-read this site would wait for ever.)"""
    state = not_holding(state, p, now)
    lease = replace(state.lease, pending=None, seen=Seen.UNKNOWN, seen_since=now, rewatch=True)
    return replace(state, lease=lease)


def actor_restarted(
    s: WorkloadState, e: ev.LeaseActorRestarted, p: Params, now: float, out: Out
) -> WorkloadState:
    """The answer the dead lease actor owed never comes: count the request as failed."""
    pending = s.lease.pending
    if pending is LeaseAct.ACQUIRE:
        return acquire_failed(s, ev.AcquireFailed(e.reason), p, now, out)
    if pending is LeaseAct.RENEW:
        # Its renewal may have been written: remember it as unconfirmed, sent when it was.
        return renew_failed(s, ev.RenewFailed(e.reason, s.lease.pending_since), p, now, out)
    if pending is LeaseAct.RELEASE:
        return release_failed(s, ev.ReleaseFailed(e.reason), p, now, out)
    return s


# -- observations (watch and reads: hints, possibly stale) -------------------------------------
def observed_held(
    s: WorkloadState, e: ev.LeaseObservedHeld, p: Params, now: float, out: Out
) -> WorkloadState:
    lease = s.lease
    if lease.seen_revision is not None and e.revision < lease.seen_revision:
        return s
    if e.holder != s.site and lease.revision is not None and e.revision > lease.revision:
        s = drop(s, p, f"lease seen held by {e.holder} at revision {e.revision}", now, out)
    return replace(s, lease=seen(s.lease, Seen.HELD, e.holder, e.revision, now))


def observed_gone(
    s: WorkloadState, e: ev.LeaseObservedGone, p: Params, now: float, out: Out
) -> WorkloadState:
    rev, lease = e.revision, s.lease
    if rev is not None and lease.seen_revision is not None and rev < lease.seen_revision:
        return s
    if lease.revision is not None:
        if rev is None or rev <= lease.revision:
            return s  # older than our own CAS: stale
        s = drop(s, p, f"lease seen gone at revision {rev}", now, out)
    return replace(s, lease=seen(s.lease, Seen.GONE, None, rev, now))


Handler = Callable[[WorkloadState, Any, Params, float, Out], WorkloadState]
LEASE_HANDLERS: Final[Mapping[type, Handler]] = {
    ev.LeaseAcquired: acquired,
    ev.AcquireFailed: acquire_failed,
    ev.LeaseRenewed: renewed,
    ev.RenewFailed: renew_failed,
    ev.RenewRefused: renew_refused,
    ev.LeaseLost: lost,
    ev.LeaseReleased: released,
    ev.ReleaseFailed: release_failed,
    ev.LeaseActorRestarted: actor_restarted,
    ev.LeaseObservedHeld: observed_held,
    ev.LeaseObservedGone: observed_gone,
}
