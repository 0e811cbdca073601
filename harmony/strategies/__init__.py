"""Pure failover decisions (sans-I/O, like h11): no I/O, no clocks, no threads.

``decision = strategy.start(site, topology, now)`` then, for every event,
``decision = strategy.step(decision.state, event, now)``: carry out ``decision.commands`` in
order and deliver a `Tick` at ``decision.wake_at``. The rules live in `tables`; the timing
argument for AbsoluteConsistency lives in `timing`.
"""

from harmony.strategies.absolute import AbsoluteConsistency
from harmony.strategies.base import FailoverStrategy
from harmony.strategies.commands import (
    AcquireLease,
    Command,
    FenceCopy,
    Promote,
    RecordDivergence,
    RecordEvent,
    ReleaseLease,
    RenewLease,
    StartCopy,
    StopCopy,
    WatchLease,
)
from harmony.strategies.events import (
    AcquireFailed,
    Copy,
    Event,
    LeaseAcquired,
    LeaseActorRestarted,
    LeaseLost,
    LeaseObservedGone,
    LeaseObservedHeld,
    LeaseRead,
    LeaseReleased,
    LeaseRenewed,
    MoveRequested,
    PartitionHealed,
    PeerAlive,
    PeerCopiesSeen,
    PeerSilent,
    PeerSuspect,
    ReleaseFailed,
    RenewFailed,
    RenewRefused,
    ShutdownRequested,
    Tick,
    WorkloadExited,
    WorkloadFenced,
    WorkloadPromoted,
    WorkloadStarted,
    WorkloadStopped,
    WorkloadUnknown,
)
from harmony.strategies.params import Params
from harmony.strategies.registry import STRATEGY_NAMES, strategy_for
from harmony.strategies.split_brain import SplitBrainAllowed
from harmony.strategies.state import Decision, WorkloadState
from harmony.strategies.tables import RECONCILE_POLICIES, Phase
from harmony.strategies.timing import (
    UnsafeTimings,
    check_timings,
    require_safe_timings,
    worst_case_takeover,
)
from harmony.strategies.topology import FailoverTopology

__all__ = [
    "RECONCILE_POLICIES",
    "STRATEGY_NAMES",
    "AbsoluteConsistency",
    "AcquireFailed",
    "AcquireLease",
    "Command",
    "Copy",
    "Decision",
    "Event",
    "FailoverStrategy",
    "FailoverTopology",
    "FenceCopy",
    "LeaseAcquired",
    "LeaseActorRestarted",
    "LeaseLost",
    "LeaseObservedGone",
    "LeaseObservedHeld",
    "LeaseRead",
    "LeaseReleased",
    "LeaseRenewed",
    "MoveRequested",
    "Params",
    "PartitionHealed",
    "PeerAlive",
    "PeerCopiesSeen",
    "PeerSilent",
    "PeerSuspect",
    "Phase",
    "Promote",
    "RecordDivergence",
    "RecordEvent",
    "ReleaseFailed",
    "ReleaseLease",
    "RenewFailed",
    "RenewLease",
    "RenewRefused",
    "ShutdownRequested",
    "SplitBrainAllowed",
    "StartCopy",
    "StopCopy",
    "Tick",
    "UnsafeTimings",
    "WatchLease",
    "WorkloadExited",
    "WorkloadFenced",
    "WorkloadPromoted",
    "WorkloadStarted",
    "WorkloadState",
    "WorkloadStopped",
    "WorkloadUnknown",
    "check_timings",
    "require_safe_timings",
    "strategy_for",
    "worst_case_takeover",
]
