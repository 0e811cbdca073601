"""The view a site keeps of one workload: immutable facts the strategies fold events into.

The actor stores the `WorkloadState` it got back in the last `Decision` and passes it to the
next `step`; it never edits it. Nothing here performs I/O or reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from harmony.strategies.commands import Command
from harmony.strategies.events import Copy
from harmony.strategies.tables import LeaseAct, PeerStatus, Phase
from harmony.strategies.topology import FailoverTopology


@dataclass(frozen=True, slots=True)
class Peer:
    status: PeerStatus
    since: float  # `now` when the status last changed


class Seen(StrEnum):
    """What watches/reads last said about the lease (possibly stale: a hint, never a proof)."""

    UNKNOWN = "unknown"
    HELD = "held"
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class LeaseView:
    """AbsoluteConsistency's lease facts. Only a successful CAS sets `revision`."""

    revision: int | None = None  # our last successful CAS; None: we do not hold the lease
    token: int | None = None  # revision of our acquisition: the fencing token
    t0: float | None = None  # send time of our last successful CAS
    pending: LeaseAct | None = None  # the request awaiting an answer
    pending_since: float = 0.0
    unconfirmed_since: float | None = None  # send time of the oldest renewal whose outcome
    # we do not know (it timed out): a later refusal may be our own write landing
    next_attempt_at: float = 0.0  # when the next renewal is due
    retry_at: float = 0.0  # earliest acquire or release after a failed one
    rewatch: bool = False  # ask for a fresh observation of the lease
    seen: Seen = Seen.UNKNOWN
    seen_holder: str | None = None
    seen_revision: int | None = None
    seen_since: float = 0.0  # when `seen` last changed
    seen_at: float = 0.0  # when the last observation came

    def valid(self, now: float, fence_offset: float) -> bool:
        """We hold the lease and the fence deadline has not come."""
        return self.revision is not None and self.t0 is not None and now < self.t0 + fence_offset

    def deadline(self, fence_offset: float) -> float | None:
        return None if self.t0 is None or self.revision is None else self.t0 + fence_offset


@dataclass(frozen=True, slots=True)
class DriverView:
    """This site's copy as far as the core knows (phases move when commands are sent).

    `doubt` is set while the copy's state is unknown (why), from the report that said so
    until a driver confirms the copy is down: the phase may move to FENCING and back to
    UNKNOWN meanwhile, the doubt stays.
    """

    phase: Phase = Phase.STOPPED
    active: bool = False  # started with a token or promoted: counts as *the* active copy
    token: int | None = None
    started_at: float | None = None
    doubt: str | None = None
    fence_attempts: int = 0  # fences sent since the doubt began
    fence_retry_at: float = 0.0  # the next fence of an unknown copy, not before

    @property
    def unknown(self) -> bool:
        return self.doubt is not None


@dataclass(frozen=True, slots=True)
class WorkloadState:
    """Everything one site knows about one workload."""

    site: str
    topology: FailoverTopology
    booted_at: float
    peers: Mapping[str, Peer] = field(default_factory=lambda: MappingProxyType({}))
    driver: DriverView = DriverView()
    lease: LeaseView = LeaseView()
    copies: tuple[Copy, ...] = ()
    synced: bool = False
    shutting_down: bool = False
    handing_over: bool = False
    cooldown_until: float = 0.0
    lost_to: str | None = None
    moved_to: str | None = None  # an operator moved the workload here: its copy wins
    no_failback_until: float = 0.0
    barred: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Sites that may not run the workload (geo constraints) -> why; see `SitesBarred`."""
    done: bool = False

    def status(self, site: str) -> PeerStatus:
        peer = self.peers.get(site)
        return PeerStatus.UNKNOWN if peer is None else peer.status

    def live(self, site: str) -> bool:
        """Ourselves, or a peer not declared silent (unknown and suspect count as live)."""
        return site == self.site or self.status(site) is not PeerStatus.SILENT

    def eligible(self, site: str) -> bool:
        """`site` may run the workload (no geo constraint bars it)."""
        return site not in self.barred

    @property
    def refused(self) -> str | None:
        """Why this site may not run the workload (geo), or None."""
        return self.barred.get(self.site)

    @property
    def leaving(self) -> bool:
        """Shutting down, handing the lease over, or barred from the workload: stop the
        copy, release the lease, take no lease."""
        return self.shutting_down or self.handing_over or self.refused is not None


@dataclass(frozen=True, slots=True)
class Decision:
    """The result of a step: the new state, what to do (in order), and when to call again.

    `wake_at`: deliver a `Tick` at this `now` (or as soon after as possible); None: only on
    the next event. Lateness eats into `fence_slack`.
    """

    state: WorkloadState
    commands: tuple[Command, ...] = ()
    wake_at: float | None = None
