"""Commands: what the decision core asks the actor layer to do.

Every command carries `reason`, a sentence the actor journals, so every decision is explained.
`RecordEvent` and `RecordDivergence` change nothing in the world; they only explain.
"""

from __future__ import annotations

from dataclasses import dataclass

from harmony.strategies.events import Copy


@dataclass(frozen=True, slots=True)
class StartCopy:
    """Start a copy. `token`: the fencing token (AbsoluteConsistency), None without a lease.

    `passive`: a warm standby copy that must not act as the active one until `Promote`.
    """

    token: int | None
    reason: str
    passive: bool = False


@dataclass(frozen=True, slots=True)
class Promote:
    """Make the running passive copy the active one, with `token`."""

    token: int
    reason: str


@dataclass(frozen=True, slots=True)
class StopCopy:
    """Graceful stop (SIGTERM, then SIGKILL after stop_grace). No deadline attached."""

    reason: str


@dataclass(frozen=True, slots=True)
class FenceCopy:
    """Stop now, for safety: must be complete within stop_grace (+ the slack in check_timings)."""

    reason: str


@dataclass(frozen=True, slots=True)
class AcquireLease:
    """Take the lease by CAS: ``create`` if `expected_revision` is None, else
    ``update(last=expected_revision)`` where that revision is a deletion/expiry marker.

    Answer with exactly one of `LeaseAcquired`, `AcquireFailed`.
    """

    expected_revision: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class RenewLease:
    """``update(key, value, last=revision)``.

    Answer with exactly one of `LeaseRenewed`, `RenewFailed`, `LeaseLost` (CAS refused).
    """

    revision: int
    reason: str


@dataclass(frozen=True, slots=True)
class ReleaseLease:
    """``delete(key, last=revision)``. Answer `LeaseReleased` or `ReleaseFailed`."""

    revision: int
    reason: str


@dataclass(frozen=True, slots=True)
class WatchLease:
    """(Re)start watching the lease key and report its current value as an observation."""

    reason: str


@dataclass(frozen=True, slots=True)
class RecordEvent:
    """A fact worth journaling (lease lost, deferral, shutdown complete, ...)."""

    kind: str
    reason: str


@dataclass(frozen=True, slots=True)
class RecordDivergence:
    """Two or more copies ran at once (SplitBrainAllowed); `winner` survives, `losers` stop."""

    policy: str
    winner: Copy
    losers: tuple[Copy, ...]
    reason: str


Command = (
    StartCopy
    | Promote
    | StopCopy
    | FenceCopy
    | AcquireLease
    | RenewLease
    | ReleaseLease
    | WatchLease
    | RecordEvent
    | RecordDivergence
)
