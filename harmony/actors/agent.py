"""AgentSupervisor: the root of one agent's actor tree.

agent                       AgentSupervisor (this)
agent/site                  SiteActor: heartbeats out, health, capacity
agent/peers                 PeerWatch: heartbeats in, alive/suspect/silent
agent/workload/<name>       WorkloadSupervisor, one per workload placed on this site
agent/workload/<name>       HorizontalActor, one per horizontal workload (its slots: above)
"""

from __future__ import annotations

import contextlib
import logging
import threading

import pykka

from harmony.actors.base import handles
from harmony.actors.horizontal import HorizontalActor
from harmony.actors.interest import PeerRouting
from harmony.actors.messages import CommandResult, DrainSite
from harmony.actors.peers import PeerChanged, PeerCopies, PeerFacts, PeerWatch
from harmony.actors.price import PriceActor, needs_price
from harmony.actors.site import SiteActor
from harmony.actors.supervision import Supervisor
from harmony.actors.workload_supervisor import Drain, MoveAway, WorkloadSupervisor
from harmony.config.slots import slot_names

log = logging.getLogger(__name__)

ROOT_PATH = "agent"


class AgentSupervisor(Supervisor):
    kind = "agent"

    def started(self) -> None:
        cfg = self.ctx.config
        self.routing = PeerRouting()
        self.start_child("site", lambda c, p, parent: SiteActor.start(c, p, parent))
        self.start_child("peers", lambda c, p, parent: PeerWatch.start(c, p, parent))
        if needs_price(cfg):  # this site's price, for cost workloads (`harmony.actors.price`)
            self.start_child("price", lambda c, p, parent: PriceActor.start(c, p, parent))
        for w in cfg.workloads:
            sites = (w.topology.primary, *w.topology.standbys)
            if cfg.site not in sites:
                continue  # placed elsewhere only
            self.start_child(f"workload/{w.name}", WorkloadSupervisor.factory(w))
            self.routing.add(f"workload/{w.name}", sites, [w.name])
        for w in self.ctx.horizontal:  # its slots are workloads above; this steers them
            if cfg.site in w.topology.sites:
                self.start_child(f"workload/{w.name}", HorizontalActor.factory(w))
                self.routing.add(f"workload/{w.name}", w.topology.sites, slot_names(w))
        self.set_state("running", site=cfg.site, mesh=cfg.mesh, witness=str(cfg.witness).lower())

    @handles(PeerChanged)
    def on_peer_changed(self, msg: PeerChanged) -> None:
        level = logging.WARNING if msg.new in ("silent", "suspect") else logging.INFO
        log.log(level, "peer %s is %s (was %s)", msg.site, msg.new, msg.old)
        self.ctx.record("", f"peer-{msg.new}", f"{msg.site} was {msg.old}", site_of=msg.site)
        self.to_workloads(msg, self.routing.concerned(msg.site))

    @handles(PeerCopies)
    def on_peer_copies(self, msg: PeerCopies) -> None:
        self.routing.copies(msg.site, msg.copies)
        self.to_workloads(msg)

    @handles(PeerFacts)
    def on_peer_facts(self, msg: PeerFacts) -> None:
        self.to_workloads(msg, self.routing.concerned(msg.site))

    def to_workloads(self, msg: object, only: list[str] | None = None) -> None:
        """Tell every workload actor, or `only` those (`PeerRouting.concerned`)."""
        names = [n for n in self.children if n.startswith("workload/")] if only is None else only
        for name in names:
            child = self.children.get(name)
            if child is not None and child.ref is not None:
                child.ref.tell(msg)

    @handles(DrainSite)
    def on_drain_site(self, msg: DrainSite) -> CommandResult:
        """Operator: move every workload running here to another live site."""
        self.ctx.record("", "operator-drain", msg.reason or "operator")
        results: list[CommandResult] = []
        for name, child in self.children.items():
            if name.startswith("workload/") and child.ref is not None:
                try:
                    result = child.ref.ask(MoveAway(), timeout=5)
                    if isinstance(result, CommandResult):
                        results.append(result)
                except (pykka.ActorDeadError, pykka.Timeout) as e:
                    results.append(CommandResult(ok=False, detail=f"{name}: {e}"))
        ok = all(r.ok for r in results)
        detail = "; ".join(r.detail for r in results) or "no workloads here"
        return CommandResult(ok=ok, detail=detail)

    @handles(Drain)
    def on_drain(self, msg: Drain) -> list[threading.Event]:
        """Ask every workload to shut down gracefully; the caller waits on the events."""
        events = []
        for name, child in self.children.items():
            if name.startswith("workload/") and child.ref is not None:
                with contextlib.suppress(pykka.ActorDeadError, pykka.Timeout):
                    done = child.ref.ask(msg, timeout=5)
                    if isinstance(done, threading.Event):
                        events.append(done)
        return events
