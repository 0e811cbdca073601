"""Events: what the actor layer tells the decision core.

Each is a small frozen dataclass. `now` is never a field: it is passed to `step` beside the
event. Times inside events (``sent_at``, ``started_at``) are monotonic seconds on the same clock
as `now`, read by the actor *before* the request left (so they are never late).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# -- peers (from PeerWatch) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerAlive:
    site: str


@dataclass(frozen=True, slots=True)
class PeerSuspect:
    site: str


@dataclass(frozen=True, slots=True)
class PeerSilent:
    site: str


# -- lease (from LeaseActor; AbsoluteConsistency only) -------------------------------------


@dataclass(frozen=True, slots=True)
class LeaseAcquired:
    """Our CAS (create, or update on a deletion/expiry marker) succeeded.

    `revision` is the fencing token; `sent_at` is when the request was sent.
    """

    revision: int
    sent_at: float


@dataclass(frozen=True, slots=True)
class AcquireFailed:
    """The acquire did not succeed. `conflict`: the CAS was refused (someone else moved first)."""

    reason: str
    conflict: bool = False


@dataclass(frozen=True, slots=True)
class LeaseRenewed:
    """Our renewal CAS ``update(last=old)`` succeeded at `revision`; `sent_at` is its t0."""

    revision: int
    sent_at: float


@dataclass(frozen=True, slots=True)
class RenewFailed:
    """A renewal timed out or the mesh was unreachable: the lease may still be ours.

    `sent_at`: when that renewal was sent, if it may have been written after all (a timeout):
    a later refusal may then turn out to be our own write (see `RenewRefused`).
    """

    reason: str
    sent_at: float | None = None


@dataclass(frozen=True, slots=True)
class LeaseRead:
    """What a read of the lease key returned right after a refusal.

    `ours`: the value names this site *and this incarnation* (an earlier incarnation's
    value is someone else's). An unreadable value is never ours. `revision` is `KEY_ABSENT`
    when the key has no message at all: it expired and its marker aged out.
    """

    revision: int
    holder: str | None
    ours: bool

    @property
    def absent(self) -> bool:
        return self.revision == KEY_ABSENT


KEY_ABSENT = 0
"""A `LeaseRead` revision no write has: stream sequences start at 1 (``create`` is a CAS
against 0, "no message for this key")."""


@dataclass(frozen=True, slots=True)
class RenewRefused:
    """Our renewal CAS ``update(last=revision)`` was refused: the key is past `revision`.

    The lease actor reads the key at once and reports what it saw (`read`, None if the read
    failed); whether that means lost, still ours, or not known yet is the strategy's call.
    """

    revision: int
    reason: str
    read: LeaseRead | None = None


@dataclass(frozen=True, slots=True)
class LeaseLost:
    """Definitely not ours any more (a test's shortcut for a refusal that proves it)."""

    reason: str
    holder: str | None = None
    revision: int | None = None


@dataclass(frozen=True, slots=True)
class LeaseObservedHeld:
    """A watch or read saw the lease held by `holder` at `revision` (may be stale)."""

    holder: str
    revision: int


@dataclass(frozen=True, slots=True)
class LeaseObservedGone:
    """A watch or read saw the lease expired or deleted.

    `revision` is the revision of the deletion/expiry marker (the CAS target for the next
    acquire), or None when the key is simply absent (acquire with create).
    """

    revision: int | None


@dataclass(frozen=True, slots=True)
class LeaseReleased:
    """Our release (delete with ``last=revision``) succeeded."""


@dataclass(frozen=True, slots=True)
class ReleaseFailed:
    """The release did not succeed; `conflict`: the lease was no longer ours anyway."""

    reason: str
    conflict: bool = False


@dataclass(frozen=True, slots=True)
class LeaseActorRestarted:
    """The lease actor died and was restarted: an answer it owed will never come."""

    reason: str = "lease actor restarted"


# -- time ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed. Deliver one at (or as soon as possible after) every `Decision.wake_at`."""


# -- driver reports (from WorkloadActor) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkloadStarted:
    """The copy is up (after `StartCopy`)."""


@dataclass(frozen=True, slots=True)
class WorkloadPromoted:
    """A passive copy became active (after `Promote`)."""


@dataclass(frozen=True, slots=True)
class WorkloadStopped:
    """The copy is down after `StopCopy` (or was stopped from outside)."""


@dataclass(frozen=True, slots=True)
class WorkloadFenced:
    """The copy is down after `FenceCopy` (stopped, killed, or the fence hook ran)."""


@dataclass(frozen=True, slots=True)
class WorkloadExited:
    """The copy exited on its own and nothing of it is left (a fact, never a guess);
    `restarting`: the driver's restart policy brings it back."""

    code: int | None = None
    restarting: bool = False


@dataclass(frozen=True, slots=True)
class WorkloadUnknown:
    """The copy may still run: a failed probe, a failed or timed-out stop or fence, a spawn
    error, a crashed run actor. Never taken for a stop: the strategy fences until a driver
    confirms the copy is down, and keeps the lease meanwhile."""

    reason: str


# -- agent ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShutdownRequested:
    """Graceful shutdown: stop the copy, then release the lease so a standby need not wait."""


# -- operator ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MoveRequested:
    """An operator moves the workload to `target` (a site of its topology).

    The target becomes the preferred site (first in the topology) from now on; a holder
    elsewhere hands its lease over (AbsoluteConsistency), and reconciles keep the target's copy
    (SplitBrainAllowed). Every site of the topology gets this event.
    """

    target: str


# -- geo constraints -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SitesBarred:
    """The sites of the topology that may not run the workload, and why (`geo.admit`).

    This site among them never starts a copy and never takes the lease (it leaves the
    workload as a site shutting down does: stop, then release); barred peers are skipped
    when the others rank themselves. Every site of the topology gets this event.
    """

    barred: Mapping[str, str]


# -- SplitBrainAllowed ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Copy:
    """One running copy of the workload as published by its site.

    `started_at` must be on one clock for all sites (the mesh's), `score` is the site's own
    measure of how good its copy is (higher is better), `token` is informational.
    """

    site: str
    started_at: float
    score: float = 0.0
    token: int | None = None


@dataclass(frozen=True, slots=True)
class PeerCopiesSeen:
    """The full set of copies this site currently knows to be running (ours included)."""

    copies: tuple[Copy, ...]


@dataclass(frozen=True, slots=True)
class PartitionHealed:
    """Peers that were silent are back; reconcile follows from the next `PeerCopiesSeen`."""

    sites: tuple[str, ...] = ()


PeerEvent = PeerAlive | PeerSuspect | PeerSilent
LeaseEvent = (
    LeaseAcquired
    | AcquireFailed
    | LeaseRenewed
    | RenewFailed
    | RenewRefused
    | LeaseActorRestarted
    | LeaseLost
    | LeaseObservedHeld
    | LeaseObservedGone
    | LeaseReleased
    | ReleaseFailed
)
DriverEvent = (
    WorkloadStarted
    | WorkloadPromoted
    | WorkloadStopped
    | WorkloadFenced
    | WorkloadExited
    | WorkloadUnknown
)
Event = (
    MoveRequested
    | SitesBarred
    | PeerEvent
    | LeaseEvent
    | DriverEvent
    | Tick
    | ShutdownRequested
    | PeerCopiesSeen
    | PartitionHealed
)
