"""GeoGate: what one workload supervisor knows of the sites' labels and of the constraints
they read, handed to the pure rule `harmony.strategies.geo.admit`.

It decides nothing itself: it gathers the facts (this site's labels from its config, each
peer's labels and constraint digest from its heartbeats, through the peer view; each peer's
liveness from `PeerChanged`) and returns the rule's answer as a strategy event when the
answer changed. A peer never heard of is left out: its labels are unknown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from harmony.actors.messages import PeerInfo
from harmony.config import SiteConfig, WorkloadConfig
from harmony.strategies.events import SitesBarred
from harmony.strategies.geo import Admission, admit, move_refusal
from harmony.strategies.labels import SiteFacts, constraints_digest, parse_constraints

LIVE_STATES = ("alive", "suspect")
"""Peer states counted as alive when saying whether an eligible site is alive."""


class GeoGate:
    def __init__(self, cfg: SiteConfig, workload: WorkloadConfig) -> None:
        t = workload.topology
        self.site = cfg.site
        self.workload = workload.name
        self.sites = (t.primary, *t.standbys)
        self.constraints = parse_constraints(t.constraints)
        self.digest = constraints_digest(self.constraints)
        self.own = SiteFacts(cfg.site, cfg.labels)
        self.states: dict[str, str] = {}
        self.admission: Admission | None = None
        self.barred: Mapping[str, str] = MappingProxyType({})

    def peer_state(self, site: str, state: str) -> None:
        """A peer's liveness as `PeerChanged` said (fresher than a peer view read)."""
        self.states[site] = state

    def facts(self, peers: Iterable[PeerInfo]) -> tuple[dict[str, SiteFacts], dict[str, str]]:
        """(site -> what it said of itself, site -> the digest it announced for this
        workload), for this site and every peer of the topology heard at least once."""
        facts = {self.site: self.own}
        digests = {self.site: self.digest}
        for p in peers:
            if p.site not in self.sites or p.last_heartbeat_age is None:
                continue
            alive = self.states.get(p.site, p.state) in LIVE_STATES
            facts[p.site] = SiteFacts(p.site, p.labels, alive=alive)
            if self.workload in p.constraints:
                digests[p.site] = p.constraints[self.workload]
        return facts, digests

    def review(self, peers: Iterable[PeerInfo]) -> SitesBarred | None:
        """The rule's answer on what is known now; an event only when the barred sites (or
        why) changed."""
        facts, digests = self.facts(peers)
        self.admission = admit(self.site, self.sites, facts, self.constraints, digests)
        if dict(self.admission.barred) == dict(self.barred):
            return None
        self.barred = self.admission.barred
        return SitesBarred(self.barred)

    def detail(self) -> dict[str, str]:
        """What the supervisor shows (snapshot, summary): the verdict and why, unless the
        workload may run here."""
        a = self.admission
        if a is None or not (self.constraints or a.barred):
            return {}
        return {"geo": str(a.verdict), "geo_reason": a.reason}

    def move_refusal(self, target: str, peers: Iterable[PeerInfo]) -> str | None:
        """Why an operator's move to `target` is refused, naming the constraint, or None."""
        if target in self.barred:
            return f"move to {target} refused: {self.barred[target]}"
        if not self.constraints:
            return None
        facts, _ = self.facts(peers)
        why = move_refusal(target, facts.values(), self.constraints)
        if why is not None and target not in facts:
            return f"move to {target} refused: its labels are not known (never heard from it)"
        return why
