"""Pure failover decisions (sans-I/O, like h11): no I/O, no clocks, no threads.

``decision = strategy_for(name, params).start(site, topology, now)`` then, for every event,
``decision = strategy.step(decision.state, event, now)``: carry out ``decision.commands`` in
order and deliver a `Tick` at ``decision.wake_at``.

This package exports what a caller drives the core with. The vocabulary it speaks lives in
two modules of its own: `harmony.strategies.events` (what callers tell the core) and
`harmony.strategies.commands` (what it asks of them). The rules live in `tables`, the names
a config chooses from in `names`, the timing argument for AbsoluteConsistency in `timing`.

The topologies beyond failover decide *where* copies run, never *who may*: site labels and
constraints (`labels`, `geo`), replicas spread over sites as slots (`horizontal`), the
cheapest site (`cost`). Each is a pure function from facts and `now` to moves with reasons;
a move reaches a strategy as the `MoveRequested` event it already takes.
"""

from harmony.strategies.base import FailoverStrategy
from harmony.strategies.commands import Command
from harmony.strategies.cost import CostDecision, CostSpec, CostState
from harmony.strategies.cost import decide as decide_cost
from harmony.strategies.events import Event
from harmony.strategies.geo import failover_within, move_refusal, where
from harmony.strategies.horizontal import (
    HorizontalSpec,
    HorizontalState,
    Move,
    Plan,
    slot_lease,
    slot_topology,
)
from harmony.strategies.horizontal import plan as plan_horizontal
from harmony.strategies.labels import (
    Constraint,
    ConstraintError,
    SiteFacts,
    eligible,
    known_labels,
    parse_constraints,
)
from harmony.strategies.names import RECONCILE_POLICIES, STRATEGY_NAMES, TOPOLOGY_NAMES
from harmony.strategies.params import Params
from harmony.strategies.registry import strategy_for, uses_lease
from harmony.strategies.state import Decision, WorkloadState
from harmony.strategies.tables import Phase
from harmony.strategies.topology import FailoverTopology

__all__ = [
    "RECONCILE_POLICIES",
    "STRATEGY_NAMES",
    "TOPOLOGY_NAMES",
    "Command",
    "Constraint",
    "ConstraintError",
    "CostDecision",
    "CostSpec",
    "CostState",
    "Decision",
    "Event",
    "FailoverStrategy",
    "FailoverTopology",
    "HorizontalSpec",
    "HorizontalState",
    "Move",
    "Params",
    "Phase",
    "Plan",
    "SiteFacts",
    "WorkloadState",
    "decide_cost",
    "eligible",
    "failover_within",
    "known_labels",
    "move_refusal",
    "parse_constraints",
    "plan_horizontal",
    "slot_lease",
    "slot_topology",
    "strategy_for",
    "uses_lease",
    "where",
]
