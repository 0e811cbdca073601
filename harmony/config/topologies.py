"""A workload's ``topology``: which sites may run it, and how it is placed among them.

Three kinds, chosen by ``kind`` (`harmony.strategies.names.TopologyName`): ``failover`` (a
primary and ordered standbys), ``horizontal`` (`replicas` copies spread over `sites`,
`harmony.strategies.horizontal`) and ``cost`` (the cheapest of `sites`,
`harmony.strategies.cost`). Each takes ``constraints`` on the sites' labels
(`harmony.strategies.labels`): no copy runs on a site outside them.

Every kind answers `sites` (its candidate sites, in order of preference), and `primary` /
`standbys` (the same list, split as a failover preference), so code that only needs the
sites of a workload (lease permissions, peer interest) reads them whatever the kind.
`topology_problem` is what the types cannot check.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import MappingProxyType

from harmony.config.base import NAME_RE, Base
from harmony.config.facts import LABEL_KEY_RE, LABEL_VALUE_RE
from harmony.strategies.cost import CostSpec
from harmony.strategies.horizontal import HorizontalSpec
from harmony.strategies.labels import Constraint, ConstraintError, parse_constraints
from harmony.strategies.topology import repeated_site


class FailoverTopologyConfig(Base, tag="failover", tag_field="kind"):
    primary: str
    standbys: list[str] = []
    constraints: list[str] = []
    """Label constraints, e.g. ``jurisdiction in ["EU"]``: sites outside never run it."""

    @property
    def sites(self) -> tuple[str, ...]:
        return (self.primary, *self.standbys)


class _RankedSites:
    """`primary` / `standbys` of a kind whose field is `sites`: the first is preferred."""

    __slots__ = ()
    sites: list[str]

    @property
    def primary(self) -> str:
        return self.sites[0]

    @property
    def standbys(self) -> list[str]:
        return self.sites[1:]


class HorizontalTopologyConfig(Base, _RankedSites, tag="horizontal", tag_field="kind"):
    """`replicas` copies over `sites`; the fields are `HorizontalSpec`'s, one to one."""

    sites: list[str]
    """The candidate sites (the constraints may narrow them)."""
    replicas: int
    spread_label: str = ""
    """The label whose values are the spread domains; "": each site is a domain."""
    max_skew: int = 1
    weights: dict[str, float] = {}
    """Spread domain (a value of `spread_label`, or a site) -> weight; a value left out
    of a non-empty table gets no copies."""
    max_unavailable: int = 1
    settle: float = 30.0
    move_timeout: float = 300.0
    constraints: list[str] = []

    def spec(self) -> HorizontalSpec:
        """The pure planner's spec (the config must be valid: see `topology_problem`)."""
        return HorizontalSpec(
            replicas=self.replicas,
            spread_label=self.spread_label or None,
            max_skew=self.max_skew,
            weights=MappingProxyType(dict(self.weights)),
            max_unavailable=self.max_unavailable,
            settle=self.settle,
            move_timeout=self.move_timeout,
            constraints=parse_constraints(self.constraints),
        )


class CostTopologyConfig(Base, _RankedSites, tag="cost", tag_field="kind"):
    """The cheapest of `sites`; the fields are `CostSpec`'s, one to one."""

    sites: list[str]
    min_saving: float
    """A move needs a saving above this (in the sites' price unit): above twice the noise."""
    hold: float = 300.0
    """Seconds the saving must last without a break before the workload moves."""
    cooldown: float = 1800.0
    """Seconds after a cost move before the next one."""
    constraints: list[str] = []

    def spec(self) -> CostSpec:
        """The pure decision's spec (the config must be valid: see `topology_problem`)."""
        return CostSpec(
            min_saving=self.min_saving,
            hold=self.hold,
            cooldown=self.cooldown,
            constraints=parse_constraints(self.constraints),
        )


TopologyConfig = FailoverTopologyConfig | HorizontalTopologyConfig | CostTopologyConfig
TOPOLOGY_KINDS: tuple[str, ...] = ("failover", "horizontal", "cost")
"""The ``kind`` values, as the file writes them."""


def kind_of(t: TopologyConfig) -> str:
    """The ``kind`` the file gave (the struct's tag)."""
    return str(type(t).__struct_config__.tag)


def constraints_of(t: TopologyConfig) -> tuple[Constraint, ...]:
    """The parsed constraints of a valid topology."""
    return parse_constraints(t.constraints)


def topology_problem(t: TopologyConfig) -> tuple[str, str] | None:
    """(field below ``topology``, reason) of the first problem, or None."""
    if isinstance(t, FailoverTopologyConfig):
        problem = _site_names(list(t.sites), _failover_field)
        if problem is None and (why := repeated_site(t.sites)) is not None:
            problem = "", why
    else:
        problem = _site_names(t.sites, lambda j: f"sites[{j}]")
        if problem is None and not t.sites:
            problem = "sites", "name at least one site"
        if problem is None and len(set(t.sites)) != len(t.sites):
            problem = "sites", "a site appears twice"
    if problem is None and isinstance(t, HorizontalTopologyConfig):
        problem = _horizontal_problem(t)
    if problem is None and isinstance(t, CostTopologyConfig):
        problem = _seconds(t, ("hold", "cooldown"), positive=False)
        if problem is None and not (math.isfinite(t.min_saving) and t.min_saving >= 0):
            problem = "min_saving", f"{t.min_saving}: must be a number >= 0"
    return problem or _constraints_problem(t.constraints)


def _failover_field(j: int) -> str:
    return "primary" if j == 0 else f"standbys[{j - 1}]"


def _site_names(sites: list[str], field: Callable[[int], str]) -> tuple[str, str] | None:
    for j, site in enumerate(sites):
        if not NAME_RE.match(site):
            return field(j), f"{site!r} is not a valid site name"
    return None


def _seconds(t: Base, names: tuple[str, ...], positive: bool) -> tuple[str, str] | None:
    """The first of `names` that is not a finite number of seconds > 0 (`positive`) or >= 0."""
    for name in names:
        value = getattr(t, name)
        if not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
            return name, f"{value}: must be a number of seconds {'> 0' if positive else '>= 0'}"
    return None


def _horizontal_problem(t: HorizontalTopologyConfig) -> tuple[str, str] | None:
    if t.replicas < 0:
        return "replicas", f"{t.replicas}: must be >= 0"
    if t.max_skew < 1:
        return "max_skew", f"{t.max_skew}: must be >= 1"
    if t.max_unavailable < 1:
        return "max_unavailable", f"{t.max_unavailable}: must be >= 1"
    if t.spread_label and not LABEL_KEY_RE.match(t.spread_label):
        return "spread_label", f"{t.spread_label!r} is not a valid label name"
    for domain, weight in t.weights.items():
        field = f"weights.{domain}"
        if t.spread_label and not LABEL_VALUE_RE.match(domain):
            return field, f"{domain!r} is not a valid value of label {t.spread_label!r}"
        if not t.spread_label and domain not in t.sites:
            return field, (
                f"{domain!r} is not one of the sites (without spread_label each site is a "
                "domain of its own: weights are per site)"
            )
        if not (math.isfinite(weight) and weight > 0):
            return field, f"{weight}: must be > 0 (leave a value out to give it no copies)"
    return _seconds(t, ("settle",), positive=False) or _seconds(t, ("move_timeout",), positive=True)


def _constraints_problem(texts: list[str]) -> tuple[str, str] | None:
    for j, text in enumerate(texts):
        try:
            parse_constraints([text])
        except ConstraintError as e:
            return f"constraints[{j}]", str(e)
    return None
