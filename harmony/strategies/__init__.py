"""Pure failover decisions (sans-I/O, like h11): no I/O, no clocks, no threads.

``decision = strategy_for(name, params).start(site, topology, now)`` then, for every event,
``decision = strategy.step(decision.state, event, now)``: carry out ``decision.commands`` in
order and deliver a `Tick` at ``decision.wake_at``.

This package exports what a caller drives the core with. The vocabulary it speaks lives in
two modules of its own: `harmony.strategies.events` (what callers tell the core) and
`harmony.strategies.commands` (what it asks of them). The rules live in `tables`, the names
a config chooses from in `names`, the timing argument for AbsoluteConsistency in `timing`.
"""

from harmony.strategies.base import FailoverStrategy
from harmony.strategies.commands import Command
from harmony.strategies.events import Event
from harmony.strategies.names import RECONCILE_POLICIES, STRATEGY_NAMES
from harmony.strategies.params import Params
from harmony.strategies.registry import strategy_for, uses_lease
from harmony.strategies.state import Decision, WorkloadState
from harmony.strategies.tables import Phase
from harmony.strategies.topology import FailoverTopology

__all__ = [
    "RECONCILE_POLICIES",
    "STRATEGY_NAMES",
    "Command",
    "Decision",
    "Event",
    "FailoverStrategy",
    "FailoverTopology",
    "Params",
    "Phase",
    "WorkloadState",
    "strategy_for",
    "uses_lease",
]
