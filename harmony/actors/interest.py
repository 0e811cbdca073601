"""Whose heartbeats an agent hears: the peers it needs, not the whole mesh.

An agent needs the liveness of the sites of its own workloads' topologies (its strategies
act on them) and of the core (the lease bucket and, in a core-and-edge mesh, the witnesses:
a witness is a core site without workloads). Everything else it would only display, and a
mesh-wide view comes from the site summaries (`harmony.mesh.summaries`), so an agent's
heartbeat traffic grows with its workloads, not with the mesh.

A mesh with no roles configured is all-core: every site is a core, so every agent hears
every site on the one wildcard subject, exactly as before interest scoping.
"""

from __future__ import annotations

from collections.abc import Collection

from harmony.config import SiteConfig


def core_sites(cfg: SiteConfig) -> frozenset[str] | None:
    """The mesh's core sites as this site's configuration lists them; None when it lists
    none (all-core: every site is a core). The one place that reads roles for liveness."""
    return frozenset(cfg.nats.cores) if cfg.nats.cores else None


def topology_sites(cfg: SiteConfig) -> frozenset[str]:
    """Every site of the topologies of the workloads placed on this site (itself included)."""
    sites = {cfg.site}
    for w in cfg.workloads:
        topology = (w.topology.primary, *w.topology.standbys)
        if cfg.site in topology:
            sites.update(topology)
    return frozenset(sites)


def heartbeat_interest(
    cfg: SiteConfig, cores: Collection[str] | None, extra: Collection[str] = ()
) -> frozenset[str] | None:
    """The peers whose heartbeats this site subscribes to; None: every site (all-core).

    `cores`: the mesh's core sites (`core_sites`), witnesses among them. `extra`: sites a
    running workload added to its topology after the configuration was read."""
    if cores is None:
        return None
    return (topology_sites(cfg) | frozenset(cores) | frozenset(extra)) - {cfg.site}


class PeerRouting:
    """Which of an agent's workload actors a peer's liveness change concerns.

    A workload's strategy reads only the sites of its topology (rank, failback, copies,
    geo) and the sites that announced a copy of it. Telling every workload actor of every
    peer change would make one flapping core cost each listener a decision, a board update
    and two journal lines (`peer-back`, `healed`) per workload: at 60 sites x 20 workloads
    that work kept the machine loaded, and the load made the next heartbeat late (the
    60 x 20 run of bench/scale.py, BENCHMARKS.md). Copies announced from outside a
    topology (configurations that disagree) still reach the actor, so nothing a strategy
    can see is withheld from it.
    """

    def __init__(self) -> None:
        self.sites: dict[str, frozenset[str]] = {}
        """actor (child name) -> the sites of its topology"""
        self.names: dict[str, frozenset[str]] = {}
        """actor -> the workload names whose copies it follows"""
        self.announced: dict[str, frozenset[str]] = {}
        """peer -> the workload names of the copies its latest heartbeat announced"""

    def add(self, actor: str, sites: Collection[str], names: Collection[str]) -> None:
        self.sites[actor] = frozenset(sites)
        self.names[actor] = frozenset(names)

    def copies(self, site: str, names: Collection[str]) -> None:
        """`site` now announces copies of `names` (PeerCopies: its full list)."""
        self.announced[site] = frozenset(names)

    def concerned(self, site: str) -> list[str]:
        """The actors to tell that `site` changed, in the order they were added."""
        announced = self.announced.get(site, frozenset())
        return [
            actor
            for actor, sites in self.sites.items()
            if site in sites or not announced.isdisjoint(self.names[actor])
        ]
