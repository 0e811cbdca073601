"""What the simulation did to the mesh, and where each workload should run because of it.

The runner keeps a `World`: which ordered links are cut, which sites are down or paused.
From it follows the *desired state* the checkers hold the mesh to: for every group of sites
that can still talk to each other (a side), how many copies of each workload it should run.

* absolute-consistency: one copy in the side that holds a majority of the lease stream's
  replicas (only that side can write the lease), none anywhere else;
* split-brain-allowed: one copy in every side that has an up site of the workload's
  topology.

Some worlds have no clear answer: a non-transitive partition (a bridge, or a one-way cut)
or a frozen agent. There the expectation is None ("unknown"): the safety checks still run,
and the recovery check waits for the next fault (a heal or a resume) to set a clear one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from harmony.sim.scenario import WorkloadSpec
from harmony.strategies import uses_lease

Expectation = dict[str, int]
"""Side (comma-joined sorted site names) -> copies that side should run."""

DOWN = "(down)"
"""The pseudo-side of sites whose agent is dead: they should run nothing."""


@dataclass
class World:
    sites: Sequence[str]
    """Every site with a nats-server: workload sites and witnesses."""
    cut: set[tuple[str, str]] = field(default_factory=set)
    down: set[str] = field(default_factory=set)
    paused: set[str] = field(default_factory=set)
    stream_peers: set[str] = field(default_factory=set)
    """Servers holding a replica of the lease stream; empty: every core server."""
    cores: set[str] = field(default_factory=set)
    """A core-and-edge mesh's cores (empty: every site is a core)."""
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    """Each site's labels: a workload's constraints leave the sites outside them out of its
    topology (no side runs it through them alone)."""

    def linked(self, a: str, b: str) -> bool:
        """Whether the direct link between a and b is up (a route, or an edge's leaf link
        to a core): neither direction cut."""
        return (a, b) not in self.cut and (b, a) not in self.cut

    def connected(self, a: str, b: str) -> bool:
        """Whether a and b can exchange messages. All-core: their route is up. Core and
        edge: an edge has no link but its leaf links to the cores, and a message crosses at
        most one route between cores (nats-server forwards from a leaf link to its routes
        and other leaf links, never from a route to another route), so two sites are
        connected when an up core each reaches directly is the same core or routed to the
        other's."""
        if not self.cores:
            return self.linked(a, b)
        here, there = self._entries(a), self._entries(b)
        return any(x == y or self.linked(x, y) for x in here for y in there)

    def _entries(self, site: str) -> set[str]:
        """The cores a site's messages enter the core by: itself (a core), or the up cores
        its leaf links reach (an edge)."""
        if site in self.cores:
            return {site}
        return {c for c in self.cores if c not in self.down and self.linked(site, c)}

    def sides(self) -> list[frozenset[str]] | None:
        """Groups of up sites that all reach each other; None if reachability is not
        transitive (a bridge or a one-way cut among up sites)."""
        up = [s for s in self.sites if s not in self.down]
        if any((b, a) not in self.cut for a, b in self.cut if a in up and b in up):
            return None  # a one-way cut (never in a core-and-edge mesh: refused)
        groups: list[set[str]] = []
        for s in up:
            joined = [g for g in groups if any(self.connected(s, o) for o in g)]
            merged = {s}.union(*joined)
            groups = [g for g in groups if g not in joined] + [merged]
        for g in groups:
            members = sorted(g)
            if any(not self.connected(a, b) for a in members for b in members if a < b):
                return None  # a bridge: a and b are cut, yet both reach a third site
        return [frozenset(g) for g in groups]

    def expect(self, w: WorkloadSpec) -> Expectation | None:
        sides = self.sides()
        if sides is None or self.paused:
            return None
        topo = set(w.eligible_sites(self.labels))
        peers = self.stream_peers or self.cores or set(self.sites)
        out: Expectation = {}
        for side in sides:
            eligible = bool(side & topo)
            if uses_lease(w.strategy):
                want = eligible and 2 * len(side & peers) > len(peers)
            else:
                want = eligible
            out[side_key(side)] = int(want)
        if self.down:
            out[DOWN] = 0
        return out

    def expectations(self, workloads: Iterable[WorkloadSpec]) -> dict[str, Expectation | None]:
        return {w.name: self.expect(w) for w in workloads}


def side_key(sites: Iterable[str]) -> str:
    return ",".join(sorted(sites))


def encode_expectations(exp: dict[str, Expectation | None]) -> str:
    return json.dumps(exp, sort_keys=True)


def decode_expectations(text: str) -> dict[str, Expectation | None]:
    raw = json.loads(text) if text else {}
    return {
        str(k): (None if v is None else {str(s): int(n) for s, n in v.items()})
        for k, v in raw.items()
    }


def partition_cuts(groups: Sequence[Sequence[str]], one_way: bool = False) -> set[tuple[str, str]]:
    """Ordered pairs to cut: between different groups (from the first group only when
    `one_way`). Sites in no group are bridges and keep all their links."""
    cuts: set[tuple[str, str]] = set()
    for i, g in enumerate(groups):
        for j, h in enumerate(groups):
            if i == j or (one_way and i != 0):
                continue
            cuts.update((a, b) for a in g for b in h)
    return cuts


def link_pairs(
    links: Sequence[Sequence[str]], all_sites: Sequence[str], one_way: bool = False
) -> set[tuple[str, str]]:
    """Ordered pairs for a link list (empty: every link), both directions unless one-way."""
    if not links:
        return {(a, b) for a in all_sites for b in all_sites if a != b}
    pairs = {(a, b) for a, b in links}
    if not one_way:
        pairs |= {(b, a) for a, b in pairs}
    return pairs
