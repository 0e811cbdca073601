"""WorkloadSupervisor: one workload on this site, run by its failover strategy.

The strategy (`harmony.strategies`) makes every decision; this actor only translates. It
turns what happens (peer changes, lease results and observations, driver reports, time) into
strategy events, calls `strategy.step`, and carries the commands out in order: driver
commands go to the `run` child, lease commands to the `lease` child, records to the journal.
It delivers a `Tick` at every `wake_at` the strategy asks for.

    agent/workload/<name>          WorkloadSupervisor (this)
    agent/workload/<name>/lease    LeaseActor (absolute-consistency only)
    agent/workload/<name>/run      WorkloadActor
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import assert_never

from harmony.actors import lease
from harmony.actors import messages as m
from harmony.actors.base import OfWorkload, handles
from harmony.actors.cost import CostActor
from harmony.actors.drivers import DriverState
from harmony.actors.drivers.tether import DeadlineHandoff, TetherSpec, deadline_dir
from harmony.actors.geo_gate import GeoGate
from harmony.actors.lease import LeaseActor
from harmony.actors.peers import PeerChanged, PeerCopies, PeerFacts
from harmony.actors.reports import copy_gone, driver_event, free_cpu
from harmony.actors.supervision import Supervisor
from harmony.actors.timers import Timer
from harmony.actors.workload import DriverReport, WorkloadActor
from harmony.config import CostTopologyConfig
from harmony.strategies import (
    Command,
    Decision,
    Event,
    FailoverTopology,
    Params,
    Phase,
    strategy_for,
)
from harmony.strategies.commands import (
    AcquireLease,
    FenceCopy,
    Promote,
    RecordDivergence,
    RecordEvent,
    ReleaseLease,
    RenewLease,
    StartCopy,
    StopCopy,
    WatchLease,
)
from harmony.strategies.events import (
    Copy,
    LeaseActorRestarted,
    MoveRequested,
    PartitionHealed,
    PeerAlive,
    PeerCopiesSeen,
    PeerSilent,
    PeerSuspect,
    ShutdownRequested,
    Tick,
    WorkloadExited,
    WorkloadUnknown,
)

log = logging.getLogger(__name__)

PEER_EVENTS: dict[str, type[PeerAlive | PeerSuspect | PeerSilent]] = {
    "alive": PeerAlive,
    "suspect": PeerSuspect,
    "silent": PeerSilent,
}
RUN_KINDS: dict[type[Command], str] = {
    StartCopy: "start",
    Promote: "promote",
    StopCopy: "stop",
    FenceCopy: "fence",
}
"""The strategy's copy commands, by the journal kind of the step."""


def workload_path(name: str) -> str:
    return f"agent/workload/{name}"


@dataclass(frozen=True)
class Drain:
    """Local ask: shut this workload down gracefully; answers a threading.Event set when done."""


@dataclass(frozen=True)
class MoveAway:
    """Local: the agent drains this site."""


class WorkloadSupervisor(Supervisor, OfWorkload):
    kind = "workload-supervisor"
    tick: Timer | None = None
    decision: Decision | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def started(self) -> None:
        """Set up on the actor's thread (the constructor is OfWorkload's), start the children,
        then the strategy."""
        w, name = self.workload, self.name
        t = w.topology
        self.topology = FailoverTopology(t.primary, tuple(t.standbys))
        params = Params.from_timings(self.ctx.config.timings, reconcile=w.reconcile)
        self.strategy = strategy_for(w.strategy, params)
        self.geo = GeoGate(self.ctx.config, w)
        self.peer_copies: dict[str, Copy] = {}
        self.last_copies: tuple[Copy, ...] | None = None
        self.drained = threading.Event()
        self.operator_down = False
        self.tether = DeadlineHandoff(TetherSpec(deadline_dir(self.ctx.config.data_dir, name)))
        if self.strategy.uses_lease:
            self.tether.reset()
            self.start_child("lease", LeaseActor.factory(w))
        self.start_child("run", WorkloadActor.factory(w))
        if isinstance(t, CostTopologyConfig):  # the price decision (`harmony.actors.cost`)
            self.start_child("cost", CostActor.factory(w))
        now = self.ctx.clock.monotonic()
        self.ctx.record(name, "boot", f"{w.strategy} on {self.ctx.site}, role {self.role()}")
        self.apply(self.strategy.start(self.ctx.site, self.topology, now))
        # Peers PeerWatch already knew before we (re)started: tell the strategy now.
        for peer in self.ctx.peer_view.read(now):
            cls = PEER_EVENTS.get(peer.state)
            if cls is not None:
                self.feed(cls(peer.site))
        self.review_geo()

    def stopping(self) -> None:
        state = self.decision.state if self.decision is not None else None
        if state is not None and state.shutting_down and not state.done:
            why = state.driver.doubt or f"copy {state.driver.phase}"
            held = " and the lease is kept until its TTL" if state.lease.revision else ""
            self.ctx.record(
                self.name, "shutdown-incomplete", f"not confirmed stopped ({why}){held}"
            )
        self.ctx.copies.set(self.name, None)
        if self.tick is not None:
            self.tick.cancel()
        super().stopping()

    def role(self) -> str:
        t = self.workload.topology
        if t.primary == self.ctx.site:
            return "primary"
        return "standby" if self.ctx.site in t.standbys else "none"

    def child_restarted(self, name: str, error: str) -> None:
        self.ctx.record(self.name, "child-restarted", f"{name} restarted after {error}")
        if name == "run":
            # Whatever the old driver ran may still run: the strategy fences it through the
            # new driver, which finds the copy by its containment.
            self.feed(WorkloadUnknown(f"run actor restarted after {error}"))
        elif name == "lease":
            self.feed(LeaseActorRestarted(f"lease actor restarted after {error}"))

    # -- the step --------------------------------------------------------------------------
    def feed(self, event: Event) -> None:
        if self.decision is None:
            return
        now = self.ctx.clock.monotonic()
        self.apply(self.strategy.step(self.decision.state, event, now))

    def apply(self, decision: Decision) -> None:
        self.decision = decision
        self.update_tether(decision)
        for cmd in decision.commands:
            self.execute(cmd)
        if self.tick is not None:
            self.tick.cancel()
            self.tick = None
        if decision.wake_at is not None:
            delay = max(0.0, decision.wake_at - self.ctx.clock.monotonic())
            self.tick = self.after(delay, Tick())
        self.publish_state(decision)
        if decision.state.done:
            self.drained.set()

    def update_tether(self, decision: Decision) -> None:
        """Hand the fence deadline to the workload's tether before any start relies on it."""
        if not self.strategy.uses_lease:
            return
        lease = decision.state.lease
        deadline = lease.deadline(self.strategy.params.fence_offset)
        try:
            self.tether.offer(lease.token, deadline, self.ctx.clock.monotonic())
        except OSError as e:  # the tether then fences at the old deadline: safe, and loud
            log.error(
                "%s: cannot hand the fence deadline to %s: %s", self.name, self.tether.spec, e
            )

    def execute(self, cmd: Command) -> None:
        """Carry one command out. The driver is told first and the journal second: a journal
        that cannot be written (disk full) never delays or skips a fence."""
        token = self.decision.state.driver.token if self.decision else None
        match cmd:
            case StartCopy() | Promote():
                self.drive(cmd, m.StartWorkload(token=cmd.token, reason=cmd.reason), cmd.token)
            case StopCopy():
                self.drive(cmd, m.StopWorkload(reason=cmd.reason), token)
            case FenceCopy():
                self.drive(cmd, m.FenceWorkload(reason=cmd.reason), token)
            case AcquireLease() | RenewLease() | ReleaseLease() | WatchLease():
                self.tell_child("lease", cmd)
            case RecordDivergence():
                losers = ",".join(c.site for c in cmd.losers)
                self.ctx.record(
                    self.name,
                    "divergence",
                    cmd.reason,
                    cmd.winner.token,
                    policy=cmd.policy,
                    winner=cmd.winner.site,
                    losers=losers,
                )
            case RecordEvent():
                self.ctx.record(self.name, cmd.kind, cmd.reason, token)
            case _:  # a command this actor does not know: a bug, never skipped quietly
                assert_never(cmd)

    def drive(
        self,
        cmd: Command,
        message: m.StartWorkload | m.StopWorkload | m.FenceWorkload,
        token: int | None,
    ) -> None:
        """A copy command: the run child first, the journal second."""
        self.tell_child("run", message)
        self.ctx.record(self.name, RUN_KINDS[type(cmd)], message.reason, token)

    def tell_child(self, name: str, message: object) -> None:
        ref = self.child_ref(name)
        if ref is not None:
            ref.tell(message)

    def publish_state(self, decision: Decision) -> None:
        s = decision.state
        lease = s.lease
        deadline = lease.deadline(self.strategy.params.fence_offset)
        self.set_state(
            "running" if not s.done else "done",
            strategy=self.workload.strategy,
            role=self.role(),
            phase=str(s.driver.phase),
            doubt=s.driver.doubt or "",
            fence_attempts=str(s.driver.fence_attempts) if s.driver.doubt else "",
            active=str(s.driver.active).lower(),
            token="" if s.driver.token is None else str(s.driver.token),
            lease="" if lease.revision is None else str(lease.revision),
            fence_at=f"{deadline:.3f}" if deadline is not None else "",
            lease_seen=str(lease.seen) + (f"@{lease.seen_holder}" if lease.seen_holder else ""),
        )

    # -- events in -------------------------------------------------------------------------
    @handles(Tick)
    def on_tick(self, msg: Tick) -> None:
        self.tick = None
        self.feed(msg)

    @handles(PeerChanged)
    def on_peer_changed(self, msg: PeerChanged) -> None:
        cls = PEER_EVENTS.get(msg.new)
        if cls is None:
            return
        self.feed(cls(msg.site))
        self.geo.peer_state(msg.site, msg.new)
        self.review_geo()
        if msg.new == "silent":
            self.peer_copies.pop(msg.site, None)
            self.feed_copies()
        if msg.old == "silent" and msg.new == "alive":
            self.ctx.record(self.name, "peer-back", f"{msg.site} is back after silence")
            self.feed(PartitionHealed((msg.site,)))

    @handles(PeerFacts)
    def on_peer_facts(self, _: PeerFacts) -> None:
        self.review_geo()

    def review_geo(self) -> None:
        """Ask the geo rule again on what is known of the sites now (`GeoGate`)."""
        barred = self.geo.review(self.ctx.peer_view.read(self.ctx.clock.monotonic()))
        if barred is not None:
            self.feed(barred)
        self.set_detail(**({"geo": "", "geo_reason": ""} | self.geo.detail()))

    @handles(PeerCopies)
    def on_peer_copies(self, msg: PeerCopies) -> None:
        info = msg.copies.get(self.name)
        old = self.peer_copies.get(msg.site)
        new = None if info is None else Copy(msg.site, info.started_wall, info.score, info.token)
        if new == old:
            return
        if new is None:
            self.peer_copies.pop(msg.site, None)
        else:
            self.peer_copies[msg.site] = new
        self.feed_copies()

    def feed_copies(self) -> None:
        if not self.strategy.announces_copies:
            return
        own = self.ctx.copies.read().get(self.name)
        copies = list(self.peer_copies.values())
        if own is not None:
            copies.append(Copy(self.ctx.site, own.started_wall, own.score, own.token))
        key = tuple(sorted(copies, key=lambda c: c.site))
        if key != self.last_copies:
            self.last_copies = key
            self.set_detail(copies=",".join(c.site for c in key))
            self.feed(PeerCopiesSeen(key))

    @handles(DriverReport)
    def on_driver_report(self, msg: DriverReport) -> None:
        ev = msg.event
        self.ctx.record(
            self.name,
            f"driver-{ev.state}",
            ev.detail or str(ev.state),
            ev.token,
            pid=str(ev.pid or ""),
            exit_code="" if ev.exit_code is None else str(ev.exit_code),
            restarting="true" if ev.restarting else "",
        )
        if ev.state is DriverState.RUNNING:
            old = self.ctx.copies.read().get(self.name)
            started = old.started_wall if old is not None else ev.wall
            self.ctx.copies.set(
                self.name, m.CopyInfo(started_wall=started, score=free_cpu(), token=ev.token)
            )
        elif copy_gone(ev):
            # A fact: this copy is gone. Its watcher may leave; an unknown copy keeps both.
            self.ctx.copies.set(self.name, None)
            self.release_tether(ev.token)
        self.feed_copies()
        event = driver_event(ev)
        if self.operator_down and ev.state in (DriverState.STOPPED, DriverState.FENCED):
            self.operator_down = False
            event = WorkloadExited(None, restarting=False)  # taken down: hand it on
        if event is not None:
            self.feed(event)

    def release_tether(self, token: int | None) -> None:
        try:
            self.tether.release(token)
        except OSError as e:  # the watcher then fences a stopped copy: harmless, and loud
            log.error("%s: cannot release the deadline of token %s: %s", self.name, token, e)

    @handles(*lease.REPORTS)
    def on_lease_event(self, event: Event) -> None:
        """What the lease child reports is already a strategy event."""
        self.feed(event)

    @handles(Drain)
    def on_drain(self, _: Drain) -> threading.Event:
        self.feed(ShutdownRequested())
        return self.drained

    # -- operator commands -----------------------------------------------------------------
    # start here = move here; stop/fence here = this copy failed: the strategy hands the
    # workload on (with a cooldown) instead of starting it again on the spot.
    @handles(m.StartWorkload)
    def on_start_workload(self, msg: m.StartWorkload) -> m.CommandResult:
        return self.on_move_workload(m.MoveWorkload(target=self.ctx.site, reason=msg.reason))

    @handles(m.StopWorkload)
    def on_stop_workload(self, msg: m.StopWorkload) -> m.CommandResult:
        return self._take_down(m.StopWorkload(reason=msg.reason or "operator"), "stop")

    @handles(m.FenceWorkload)
    def on_fence_workload(self, msg: m.FenceWorkload) -> m.CommandResult:
        return self._take_down(m.FenceWorkload(reason=msg.reason or "operator"), "fence")

    def _take_down(self, cmd: m.StopWorkload | m.FenceWorkload, verb: str) -> m.CommandResult:
        self.ctx.record(self.name, f"operator-{verb}", cmd.reason)
        self.operator_down = True
        self.tell_child("run", cmd)
        return m.CommandResult(ok=True, detail=f"{verb} sent to {self.name} on {self.ctx.site}")

    @handles(m.MoveWorkload)
    def on_move_workload(self, msg: m.MoveWorkload) -> m.CommandResult:
        target = msg.target
        if target not in self.topology:
            return m.CommandResult(
                ok=False, detail=f"{target} is not a site of {self.name} ({self.topology.sites})"
            )
        refusal = self.geo.move_refusal(target, self.ctx.peer_view.read(self.ctx.clock.monotonic()))
        if refusal is not None:
            self.ctx.record(self.name, "move-refused", refusal)
            return m.CommandResult(ok=False, detail=refusal)
        self.ctx.record(self.name, "operator-move", f"to {target} {msg.reason}".strip())
        if not msg.origin:  # every site of the topology must agree on the new preference
            for site in self.topology.sites:
                if site != self.ctx.site:
                    fwd = m.MoveWorkload(target=target, reason=msg.reason, origin=self.ctx.site)
                    self.ctx.ref(site, self.path).tell(fwd)
        self.topology = self.topology.preferring(target)
        self.feed(MoveRequested(target))
        return m.CommandResult(ok=True, detail=f"moving {self.name} to {target}")

    @handles(MoveAway)
    def on_move_away(self, _: MoveAway) -> m.CommandResult:
        """Drain: move to the best other live site, if the workload runs here."""
        if self.decision is None or self.decision.state.driver.phase is Phase.STOPPED:
            return m.CommandResult(ok=True, detail=f"{self.name}: not running here")
        state = self.decision.state
        for site in self.topology.sites:
            if site != self.ctx.site and state.live(site) and state.eligible(site):
                return self.on_move_workload(m.MoveWorkload(target=site, reason="drain"))
        return m.CommandResult(ok=False, detail=f"{self.name}: no other live site to move to")
