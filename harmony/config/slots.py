"""A horizontal workload runs as `replicas` slot workloads: what the agent runs instead.

Slot i of horizontal workload ``w`` is an ordinary failover workload named ``w--i``
(`harmony.strategies.horizontal.slot_lease`) under ``w``'s strategy, driver and constraints,
with a lease of its own (absolute-consistency: two copies of one slot never run, by the
same proof as any workload) and the failover topology `slot_topology` gives it over ``w``'s
sites: rotated by i, so the slots start spread over the sites and fail over to different
ones. The expansion reads nothing but the workload's own configuration, so every site
derives the same slots from the same file. Where each slot then runs (spread, capacity,
rebalance) is the horizontal actor's business (`harmony.actors.horizontal`), through the
operator-move path.

A slot's name is a workload name everywhere (subjects, lease buckets, data folders, the
status views), so user workloads may not take one: a name ending in ``--<digits>`` is
reserved, and a horizontal workload's name must leave room for its slot numbers.
"""

from __future__ import annotations

import re

import msgspec

from harmony.config.base import NAME_RE
from harmony.config.site import SiteConfig, WorkloadConfig
from harmony.config.topologies import FailoverTopologyConfig, HorizontalTopologyConfig
from harmony.strategies.horizontal import SLOT_SEP, slot_lease, slot_topology

RESERVED_RE = re.compile(rf"{SLOT_SEP}[0-9]+$")
"""Workload names of this shape are the slots of horizontal workloads."""


def slot_names(w: WorkloadConfig) -> list[str]:
    """The slots' workload names of a horizontal workload (none for another kind)."""
    t = w.topology
    if not isinstance(t, HorizontalTopologyConfig):
        return []
    return [slot_lease(w.name, i) for i in range(t.replicas)]


def name_problem(w: WorkloadConfig) -> str | None:
    """Why `w`'s name cannot be used, as a slot name or for its slots' names, or None."""
    if RESERVED_RE.search(w.name):
        return (
            f"{w.name!r}: names ending in '{SLOT_SEP}<number>' are reserved for the slots of "
            "horizontal workloads (slot i of workload w runs as w--i)"
        )
    longest = slot_names(w)[-1:]
    if longest and not NAME_RE.match(longest[0]):
        return (
            f"{w.name!r} is too long for its slots' names ({longest[0]!r} must be a valid "
            "name: at most 63 characters)"
        )
    return None


def slot_workloads(w: WorkloadConfig) -> list[WorkloadConfig]:
    """The failover workloads that run horizontal workload `w` (`w` itself otherwise)."""
    t = w.topology
    if not isinstance(t, HorizontalTopologyConfig):
        return [w]
    out = []
    for i, name in enumerate(slot_names(w)):
        order = slot_topology(i, None, t.sites)
        assert order is not None  # a valid topology names at least one site
        topology = FailoverTopologyConfig(
            primary=order.primary, standbys=list(order.standbys), constraints=list(t.constraints)
        )
        out.append(msgspec.structs.replace(w, name=name, topology=topology))
    return out


def horizontal_workloads(cfg: SiteConfig) -> tuple[WorkloadConfig, ...]:
    """The horizontal workloads of a site configuration, as written."""
    return tuple(w for w in cfg.workloads if isinstance(w.topology, HorizontalTopologyConfig))


def expand(cfg: SiteConfig) -> SiteConfig:
    """`cfg` with each horizontal workload replaced by its slot workloads, in place."""
    if not horizontal_workloads(cfg):
        return cfg
    return msgspec.structs.replace(
        cfg, workloads=[s for w in cfg.workloads for s in slot_workloads(w)]
    )
