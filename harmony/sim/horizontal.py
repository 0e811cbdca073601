"""Horizontal workloads in a scenario: written once, run and judged as their slots.

A scenario workload with ``replicas > 0`` is horizontal over its sites (``primary`` and
``standbys``, in that order). The site configurations carry it as written (a ``horizontal``
topology: the agent steers it); everything that judges a run (the ground truth, the
`absolute`, `geo` and `recovery` checkers, `wait-until`) sees its slots, each an ordinary
failover workload named as the agent names it (`harmony.config.slots`), with the topology
the agent gives it. So "never two copies of an absolute-consistency slot" and "no copy
outside the constraints" are the existing checkers applied per slot, from the slots' own
records. `check_horizontal` adds what only the whole workload can say: at the end of the
run every slot runs (replicas back to N) and the copies are spread within `max_skew`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import msgspec

from harmony.config.slots import RESERVED_RE
from harmony.config.topologies import HorizontalTopologyConfig
from harmony.sim.findings import Violation
from harmony.sim.history import Interval
from harmony.sim.scenario import Scenario, WorkloadSpec
from harmony.strategies.horizontal import slot_lease, slot_topology


def slot_specs(w: WorkloadSpec) -> list[WorkloadSpec]:
    """The slots of horizontal `w` as failover workloads (`w` itself otherwise)."""
    if w.replicas <= 0:
        return [w]
    sites = [w.primary, *w.standbys]
    out = []
    for i in range(w.replicas):
        order = slot_topology(i, None, sites)
        assert order is not None
        out.append(
            msgspec.structs.replace(
                w,
                name=slot_lease(w.name, i),
                primary=order.primary,
                standbys=list(order.standbys),
                replicas=0,
            )
        )
    return out


def with_slots(sc: Scenario) -> Scenario:
    """`sc` judged by slots: `workloads` holds the slots, `horizontal` the workloads as
    written (what the site configurations carry)."""
    written = [w for w in sc.workloads if w.replicas > 0]
    if not written:
        return sc
    slots = [s for w in sc.workloads for s in slot_specs(w)]
    return msgspec.structs.replace(sc, workloads=slots, horizontal=written)


def configured(sc: Scenario) -> list[WorkloadSpec]:
    """The workloads as the sites' configurations carry them (a horizontal one, not its
    slots)."""
    names = {slot_lease(h.name, i) for h in sc.horizontal for i in range(h.replicas)}
    return [*(w for w in sc.workloads if w.name not in names), *sc.horizontal]


def horizontal_topology(w: WorkloadSpec) -> HorizontalTopologyConfig | None:
    """The site configuration's topology of a horizontal workload (None: not one)."""
    if w.replicas <= 0:
        return None
    return HorizontalTopologyConfig(
        sites=[w.primary, *w.standbys],
        replicas=w.replicas,
        spread_label=w.spread_label,
        max_skew=w.max_skew,
        max_unavailable=w.max_unavailable,
        settle=w.settle,
        constraints=list(w.constraints),
    )


def spec_problem(w: WorkloadSpec) -> str | None:
    """Why a scenario workload cannot be run as written (horizontal fields), or None."""
    if RESERVED_RE.search(w.name):
        return f"{w.name!r}: names ending in '--<number>' are the slots of horizontal workloads"
    if w.replicas < 0 or w.max_skew < 1 or w.max_unavailable < 1 or w.settle < 0:
        return "replicas >= 0, max_skew >= 1, max_unavailable >= 1 and settle >= 0"
    return None


def running_at(intervals: Sequence[Interval], t: float) -> list[Interval]:
    return [i for i in intervals if i.start <= t and (i.end is None or i.end >= t)]


def check_horizontal(
    sc: Scenario, intervals: Mapping[str, Sequence[Interval]], horizon: float
) -> list[Violation]:
    """horizontal: at the end every slot of each horizontal workload runs, once, and the
    copies per eligible site differ by at most `max_skew` (from the history)."""
    out: list[Violation] = []
    for h in sc.horizontal:
        per_site: Counter[str] = Counter()
        down = []
        for s in slot_specs(h):
            live = running_at(intervals.get(s.name, ()), horizon)
            per_site.update({i.site for i in live})
            if not live:
                down.append(s.name)
        if down:
            out.append(
                Violation(
                    "horizontal",
                    h.name,
                    horizon,
                    f"{len(down)} of {h.replicas} replicas not running at the end: "
                    + ", ".join(down),
                )
            )
        allowed = h.eligible_sites(sc.labels)
        counts = [per_site.get(site, 0) for site in allowed]
        if counts and max(counts) - min(counts) > h.max_skew:
            spread = ", ".join(f"{site}: {per_site.get(site, 0)}" for site in allowed)
            out.append(
                Violation(
                    "horizontal",
                    h.name,
                    horizon,
                    f"copies at the end are spread beyond max_skew {h.max_skew} ({spread})",
                )
            )
    return out


def spread_at_start(sc: Scenario, where: Mapping[str, set[str]]) -> bool:
    """The start a scenario may count on for each horizontal workload: every slot runs on
    exactly one site, spread within `max_skew` (`where`: slot -> the sites running it).
    Which site runs which slot is the leases' race at boot, not a promise."""
    for h in sc.horizontal:
        per_site: Counter[str] = Counter()
        for s in slot_specs(h):
            sites = where.get(s.name, set())
            if len(sites) != 1:
                return False
            per_site.update(sites)
        counts = [per_site.get(site, 0) for site in h.eligible_sites(sc.labels)]
        if counts and max(counts) - min(counts) > h.max_skew:
            return False
    return True
