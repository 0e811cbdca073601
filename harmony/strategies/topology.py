"""Failover topology: which sites may run a workload, in order of preference.

`FailoverTopology` is the first topology: a primary site plus ordered standbys. Strategies only
ask it three questions: is a site in it, what is its rank, and who comes before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def repeated_site(sites: Sequence[str]) -> str | None:
    """Why `sites` (primary first, then standbys) repeat themselves, or None: the one check
    that a strategy's topology and a site config's ``[topology]`` both make."""
    if len(set(sites)) != len(sites):
        return "a site appears twice in primary + standbys"
    return None


@dataclass(frozen=True, slots=True)
class FailoverTopology:
    """A primary site and ordered standbys; `warm` keeps passive copies running on standbys.

    With ``warm=True`` (AbsoluteConsistency only) every site of the topology that does not hold
    the lease runs a passive copy, and the site that takes the lease is told to `Promote` it
    instead of starting a cold one.
    """

    primary: str
    standbys: tuple[str, ...] = ()
    warm: bool = False

    def __post_init__(self) -> None:
        if not self.primary:
            raise ValueError("topology needs a primary site")
        if any(not s for s in self.standbys):
            raise ValueError("standby site names must not be empty")
        problem = repeated_site(self.sites)
        if problem is not None:
            raise ValueError(f"{problem}: {self.sites}")

    @classmethod
    def of(cls, primary: str, *standbys: str, warm: bool = False) -> FailoverTopology:
        """Short constructor: ``FailoverTopology.of("a", "b", "c")``."""
        return cls(primary, tuple(standbys), warm)

    @property
    def sites(self) -> tuple[str, ...]:
        """All sites, most preferred first."""
        return (self.primary, *self.standbys)

    def __contains__(self, site: object) -> bool:
        return site in self.sites

    def rank(self, site: str) -> int:
        """0 for the primary, 1 for the first standby, ...; sites outside rank last."""
        sites = self.sites
        return sites.index(site) if site in sites else len(sites)

    def preferring(self, site: str) -> FailoverTopology:
        """The same sites with `site` first (an operator's move); the rest keep their order."""
        rest = tuple(s for s in self.sites if s != site)
        return FailoverTopology(site, rest, self.warm)

    def before(self, site: str) -> tuple[str, ...]:
        """The sites preferred over `site`."""
        return self.sites[: self.rank(site)]
