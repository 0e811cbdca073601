"""HorizontalActor: where the slots of one horizontal workload should run, made so.

The slots themselves are ordinary failover workloads (`harmony.config.slots`), each with its
own supervisor, strategy and lease; they fail over on their own. This actor only steers
them: it gathers the facts (each site's labels, capacity and liveness from the peer view
and `PeerChanged`; where each slot's copy runs, from this site's copy board and the copies
the peers announce in their heartbeats), calls the pure planner
`harmony.strategies.horizontal.plan`, and turns each `Move` into the operator's move,
`MoveWorkload(target)` to the slot's supervisor here, which tells the slot's other sites
and feeds its strategy `MoveRequested` (the path an operator's `move` takes).

Who acts: every site of the workload plans (to show what it sees), but only one sends the
moves: the *coordinator*, the first site of the workload's `sites` list that this site sees
alive. One actor acting keeps the planner's state (pending moves, how long an imbalance has
lasted, so `settle` and `max_unavailable`) in one place. Two sites may both believe they are
coordinator while they see different liveness (a partition); then both send moves, and that
is harmless for safety: a move only changes a slot's *preference*, and who runs a slot is
still its strategy's decision (absolute-consistency: the slot's lease, so never two copies
of one slot). Conflicting moves can only delay a slot until the views agree.

No move is sent in the first `boot_grace` seconds: the slots' own primaries start them,
and the peers' heartbeats (their copies) must be heard before "not running" means anything.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from types import MappingProxyType

from harmony.actors import messages as m
from harmony.actors.base import OfWorkload, handles
from harmony.actors.geo_gate import LIVE_STATES
from harmony.actors.peers import PeerChanged, PeerCopies, PeerFacts, ResendCopies
from harmony.actors.workload_supervisor import Drain, MoveAway, workload_path
from harmony.config.slots import slot_names
from harmony.config.topologies import HorizontalTopologyConfig
from harmony.mesh.remote import RemoteError
from harmony.strategies.horizontal import HorizontalState, Move, MoveKind, Plan, plan
from harmony.strategies.labels import SiteFacts
from harmony.strategies.registry import uses_lease

PEERS_PATH = "agent/peers"
BOOT_HEARTBEATS = 3
"""Heartbeat intervals, on top of the lease TTL, before a freshly started actor acts."""


@dataclass(frozen=True)
class Replan:
    """Local, periodic: plan again on what is known now (time alone moves `settle`)."""


class HorizontalActor(OfWorkload):
    kind = "horizontal"

    def started(self) -> None:
        t = self.workload.topology
        assert isinstance(t, HorizontalTopologyConfig)
        timings = self.ctx.config.timings
        self.spec = t.spec()
        self.sites = tuple(t.sites)
        self.slots = slot_names(self.workload)
        self.index = {name: i for i, name in enumerate(self.slots)}
        self.planned = HorizontalState()
        self.liveness: dict[str, str] = {}
        self.peer_copies: dict[str, frozenset[str]] = {}
        self.notes: tuple[str, ...] = ()
        self.aligned: dict[int, float] = {}
        self.draining = False  # this agent stops: peers leaving now are no loss to act on
        self.act_after = (
            self.ctx.clock.monotonic()
            + timings.lease_ttl
            + BOOT_HEARTBEATS * timings.heartbeat_interval
        )
        self.every(timings.heartbeat_interval, Replan(), first=timings.heartbeat_interval)
        watch = self.ctx.directory.get(PEERS_PATH)
        if watch is not None:  # after a restart of this actor: hear every peer's copies again
            watch.tell(ResendCopies())
        self.replan()

    # -- facts ---------------------------------------------------------------------------
    def facts(self) -> tuple[list[SiteFacts], list[str]]:
        """What each site of the workload says of itself and whether it is alive; sites
        never heard from are left out (their labels are unknown), and named."""
        now = self.ctx.clock.monotonic()
        peers = {p.site: p for p in self.ctx.peer_view.read(now)}
        out: list[SiteFacts] = []
        unheard: list[str] = []
        for site in self.sites:
            if site == self.ctx.site:
                out.append(self.ctx.config.facts(alive=True))
                continue
            p = peers.get(site)
            if p is None or p.last_heartbeat_age is None:
                unheard.append(site)
                continue
            alive = self.liveness.get(site, p.state) in LIVE_STATES
            capacity = p.site_capacity if p.site_capacity is not None else 1
            out.append(SiteFacts(site, p.labels, capacity, alive=alive))
        return out, unheard

    def current(self) -> tuple[dict[int, str], dict[int, set[str]]]:
        """(slot -> the site its copy runs on, slot -> every site it was seen on). A slot
        seen on two sites counts at its pending move's target, else the first by name."""
        running: dict[str, frozenset[str]] = {
            **self.peer_copies,
            self.ctx.site: frozenset(self.ctx.copies.read()),
        }
        where: dict[int, str] = {}
        seen: dict[int, set[str]] = {}
        for site in sorted(running):
            for name in running[site]:
                slot = self.index.get(name)
                if slot is None or site not in self.sites:
                    continue
                seen.setdefault(slot, set()).add(site)
                moving = self.planned.pending.get(slot)
                if slot not in where or (moving is not None and moving.target == site):
                    where[slot] = site
        return where, seen

    def coordinator(self, facts: list[SiteFacts]) -> str:
        alive = {s.name for s in facts if s.alive}
        return next(s for s in self.sites if s in alive)  # this site is always alive

    # -- the step ------------------------------------------------------------------------
    def replan(self) -> None:
        now = self.ctx.clock.monotonic()
        facts, unheard = self.facts()
        current, seen = self.current()
        result = plan(self.spec, self.planned, facts, current, now)
        lead = self.coordinator(facts)
        acting = lead == self.ctx.site and now >= self.act_after and not self.draining
        if acting:
            self.planned = result.state
            for move in result.moves:
                self.send(move)
            self.align(result, seen, now)
        else:  # only the coordinator's moves are pending; the settle clock runs everywhere
            self.planned = HorizontalState(imbalanced_since=result.state.imbalanced_since)
        notes = result.notes + ((f"never heard from: {', '.join(unheard)}",) if unheard else ())
        self.show(result, current, notes, lead)

    def align(self, result: Plan, seen: dict[int, set[str]], now: float) -> None:
        """A slot seen on several sites (split-brain-allowed after a heal: the sites cut off
        when it moved never heard of the move, and prefer their own copy) is moved again to
        where the plan has it, so that every site of the slot prefers the same copy and its
        reconcile keeps that one. Repeated at most once per lease TTL while it lasts."""
        if uses_lease(self.workload.strategy):
            return  # a slot's lease: two sites listing it is only a heartbeat's lag
        every = self.ctx.config.timings.lease_ttl
        for slot, sites in sorted(seen.items()):
            target = result.placement.get(slot)
            if len(sites) < 2 or target is None or now < self.aligned.get(slot, -every) + every:
                continue
            self.aligned[slot] = now
            why = f"slot {slot} seen on {', '.join(sorted(sites))}: every site prefers {target}"
            self.send(Move(slot, None, target, MoveKind.PLACE, why), kind="align")

    def send(self, move: Move, kind: str = "") -> None:
        slot = self.slots[move.slot]
        if move.target is None:  # nowhere to go: the slot's own geo gate stops it if it must
            self.ctx.record(self.name, "horizontal-stuck", move.reason, slot=slot)
            return
        kind = kind or str(move.kind)
        self.ctx.record(self.name, f"horizontal-{kind}", move.reason, slot=slot, target=move.target)
        reason = f"horizontal {kind}: {move.reason}"
        try:
            self.ctx.ref(self.ctx.site, workload_path(slot)).tell(
                m.MoveWorkload(target=move.target, reason=reason[:200])
            )
        except RemoteError as e:  # the slot's supervisor is restarting: plan it again
            self.ctx.record(self.name, "horizontal-unsent", f"{slot}: {e}", slot=slot)
            pending = {k: v for k, v in self.planned.pending.items() if k != move.slot}
            self.planned = replace(self.planned, pending=MappingProxyType(pending))

    def show(
        self, result: Plan, current: dict[int, str], notes: tuple[str, ...], lead: str
    ) -> None:
        running = len(current)
        if notes != self.notes:
            self.notes = notes
            if notes:
                self.ctx.record(self.name, "horizontal-notes", "; ".join(notes))
        self.set_state(
            "running",
            strategy=self.workload.strategy,
            phase="running" if running >= self.spec.replicas else "degraded",
            replicas=f"{running}/{self.spec.replicas}",
            slots=" ".join(f"{i}@{current.get(i, '-')}" for i in range(self.spec.replicas)),
            moving=" ".join(f"{i}->{p.target}" for i, p in sorted(self.planned.pending.items())),
            coordinator=lead,
            why="; ".join(notes),
        )

    # -- events in -----------------------------------------------------------------------
    @handles(Replan)
    def on_replan(self, _: Replan) -> None:
        self.replan()

    @handles(PeerChanged)
    def on_peer_changed(self, msg: PeerChanged) -> None:
        self.liveness[msg.site] = msg.new
        if msg.new == "silent":  # PeerWatch forgets its copies too, and resends on heal
            self.peer_copies.pop(msg.site, None)
        self.replan()

    @handles(PeerCopies)
    def on_peer_copies(self, msg: PeerCopies) -> None:
        self.peer_copies[msg.site] = frozenset(n for n in msg.copies if n in self.index)
        self.replan()

    @handles(PeerFacts)
    def on_peer_facts(self, _: PeerFacts) -> None:
        self.replan()

    @handles(Drain)
    def on_drain(self, _: Drain) -> threading.Event:
        self.draining = True
        done = threading.Event()  # nothing runs here: the slots drain themselves
        done.set()
        return done

    @handles(MoveAway)
    def on_move_away(self, _: MoveAway) -> m.CommandResult:
        return m.CommandResult(ok=True, detail=f"{self.name}: its slots move on their own")

    @handles(m.MoveWorkload, m.StartWorkload, m.StopWorkload, m.FenceWorkload)
    def on_operator(self, msg: object) -> m.CommandResult:
        first = self.slots[0] if self.slots else f"{self.name}--0"
        return m.CommandResult(
            ok=False,
            detail=f"{self.name} is horizontal: command one of its slots ({first}, ...)",
        )
