"""The names a site configuration chooses from, each list written once.

A `Literal` is what msgspec validates a config field against and what mypy checks every
table key and class attribute against; the tuples are read from the same line with
`typing.get_args`, so the config, the scenario files, the registry, the tables and the TUI
cannot drift apart.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

StrategyName = Literal["absolute-consistency", "split-brain-allowed"]
ReconcilePolicy = Literal["keep-original", "keep-replacement", "best-score"]
TopologyName = Literal["failover", "horizontal", "geo", "cost"]
"""How a workload's sites are chosen (`topology`, `horizontal`, `geo`, `cost` modules);
each composes with every strategy, and label constraints apply to each."""

STRATEGY_NAMES: Final[tuple[StrategyName, ...]] = get_args(StrategyName)
RECONCILE_POLICIES: Final[tuple[ReconcilePolicy, ...]] = get_args(ReconcilePolicy)
TOPOLOGY_NAMES: Final[tuple[TopologyName, ...]] = get_args(TopologyName)

DEFAULT_STRATEGY: Final[StrategyName] = "absolute-consistency"
"""What a workload runs under when its config names no strategy: safety first."""
DEFAULT_RECONCILE: Final[ReconcilePolicy] = "keep-original"
"""SplitBrainAllowed's policy when none is named: the copy that ran first survives."""
DEFAULT_TOPOLOGY: Final[TopologyName] = "failover"
"""A primary and ordered standbys: what every workload had before issue 12."""
