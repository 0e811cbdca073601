"""Whether the given sites can place each workload: what `harmony config check` adds for
topologies, from several site files at once.

A site's labels are known only from its own file. Each check decides from the files given;
when a site of the topology has no file among them, what depends on that site's labels is
not guessed: a note says so, and only what the given files prove is a problem.

* a price hook that is not an executable file;
* a constraint (or `spread_label`) naming a label no given site has;
* fewer eligible sites (with room: `capacity`) than the workload needs: `replicas` for a
  horizontal topology, one otherwise; a cost topology also needs a priced eligible site;
* `meaning`: the facts of a topology that every site configuring the workload must agree on,
  constraints compared by what they mean (order, spacing and quoting aside).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec

from harmony.config.site import SiteConfig
from harmony.config.topologies import (
    CostTopologyConfig,
    HorizontalTopologyConfig,
    TopologyConfig,
    constraints_of,
    kind_of,
)
from harmony.strategies.horizontal import usable
from harmony.strategies.labels import SiteFacts, eligible


@dataclass(frozen=True)
class Finding:
    file: str
    field: str
    reason: str


def hook_problem(hook: str) -> str | None:
    """Why `hook` cannot be run as a command, or None."""
    p = Path(hook)
    if not p.exists():
        return f"{hook}: no such file"
    if not p.is_file():
        return f"{hook}: not a regular file"
    if not os.access(p, os.X_OK):
        return f"{hook}: not executable (chmod +x)"
    return None


def meaning(t: TopologyConfig) -> dict[str, str]:
    """Attribute (below ``topology``) -> what it means, comparable between files."""
    said: dict[str, str] = {"kind": repr(kind_of(t))}
    for f in msgspec.structs.fields(t):
        value = getattr(t, f.name)
        if f.name == "constraints":
            said[f.name] = repr(sorted(c.canonical for c in constraints_of(t)))
        elif isinstance(value, dict):
            said[f.name] = repr(sorted(value.items()))
        else:
            said[f.name] = repr(value)
    return said


def placement(configs: Mapping[str, SiteConfig]) -> tuple[list[Finding], list[str]]:
    """(problems, notes) of the topologies in `configs` (file -> valid config)."""
    problems: list[Finding] = []
    notes: list[str] = []
    for path, cfg in configs.items():
        if cfg.price is not None and cfg.price.hook:
            why = hook_problem(cfg.price.hook)
            if why is not None:
                problems.append(Finding(path, "price.hook", why))
    sites: dict[str, SiteConfig] = {}
    for cfg in configs.values():
        sites.setdefault(cfg.site, cfg)
    labels = frozenset(k for cfg in sites.values() for k in cfg.labels)
    seen: set[tuple[str, str]] = set()
    for path, cfg in configs.items():
        for i, w in enumerate(cfg.workloads):
            key = (w.name, repr(meaning(w.topology)))
            if key not in seen:
                seen.add(key)
                at = Workload(path, f"workloads[{i}].topology", w.name)
                _check(at, w.topology, sites, labels, problems, notes)
    return problems, notes


@dataclass(frozen=True)
class Workload:
    """Where a workload's topology is written: file, field, the workload's name."""

    file: str
    field: str
    name: str


def _check(
    at: Workload,
    t: TopologyConfig,
    sites: Mapping[str, SiteConfig],
    labels: frozenset[str],
    problems: list[Finding],
    notes: list[str],
) -> None:
    missing = [s for s in t.sites if s not in sites]
    unknown = (
        f"; no file given for {', '.join(missing)}: their labels are unknown" if missing else ""
    )
    known = ", ".join(sorted(labels)) or "none"
    named = [(f"constraints[{j}]", c.key, c.text) for j, c in enumerate(constraints_of(t))]
    if isinstance(t, HorizontalTopologyConfig) and t.spread_label:
        named.append(("spread_label", t.spread_label, t.spread_label))
    for field, label, text in named:
        if label not in labels:
            why = f"{text!r}: no given site has a label {label!r} (labels: {known})"
            if missing:
                notes.append(f"workload {at.name!r} {field}: {why}{unknown}")
            else:
                problems.append(Finding(at.file, f"{at.field}.{field}", why))
                return
    facts = [sites[s].facts() for s in t.sites if s in sites]
    if isinstance(t, HorizontalTopologyConfig):
        ok, excluded = usable(t.spec(), facts)
        need, room, field = t.replicas, sum(s.capacity for s in ok), "replicas"
        what = f"{need} replicas, but the eligible sites have room for {room}"
    else:
        ok, excluded = eligible(facts, constraints_of(t))
        need, room, field = 1, len(ok), "constraints"
        what = "no site of the topology meets the constraints"
    if room < need:
        why = what + (f" ({'; '.join(excluded.values())})" if excluded else "")
        if missing:
            notes.append(f"workload {at.name!r}: {why}{unknown}")
        else:
            problems.append(Finding(at.file, f"{at.field}.{field}", why))
        return
    if isinstance(t, CostTopologyConfig):
        _priced(at, ok, sites, missing, unknown, problems, notes)


def _priced(
    at: Workload,
    ok: tuple[SiteFacts, ...],
    sites: Mapping[str, SiteConfig],
    missing: list[str],
    unknown: str,
    problems: list[Finding],
    notes: list[str],
) -> None:
    if any(sites[s.name].price is not None for s in ok):
        return
    why = f"no eligible site ({', '.join(s.name for s in ok)}) has a [price]: it never runs"
    if missing:
        notes.append(f"workload {at.name!r}: {why}{unknown}")
    else:
        problems.append(Finding(at.file, at.field, why))
