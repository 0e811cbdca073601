"""Strategy lookup by the public configuration names (listed once, in `names`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from harmony.strategies.absolute import AbsoluteConsistency
from harmony.strategies.base import FailoverStrategy
from harmony.strategies.names import STRATEGY_NAMES
from harmony.strategies.params import Params
from harmony.strategies.split_brain import SplitBrainAllowed

STRATEGIES: Final[Mapping[str, type[FailoverStrategy]]] = {
    cls.name: cls for cls in (AbsoluteConsistency, SplitBrainAllowed)
}


def strategy_for(name: str, params: Params | None = None) -> FailoverStrategy:
    """The strategy configured as `name` (``absolute-consistency``, ``split-brain-allowed``).

    Raises ValueError naming the valid names; AbsoluteConsistency also raises `UnsafeTimings`
    (a ValueError) when `params` break the inequalities of `check_timings`.
    """
    cls = STRATEGIES.get(name)
    if cls is None:
        valid = ", ".join(STRATEGY_NAMES)
        raise ValueError(f"unknown failover strategy {name!r}; valid names: {valid}")
    return cls(params)


def uses_lease(name: str) -> bool:
    """Whether workloads of strategy `name` run under a lease (and need the lease bucket)."""
    cls = STRATEGIES.get(name)
    return cls is not None and cls.uses_lease


def abbreviation(name: str) -> str:
    """A strategy's short name for narrow displays (``AC``, ``SBA``); an unknown name as is."""
    cls = STRATEGIES.get(name)
    return name if cls is None else cls.abbreviation
