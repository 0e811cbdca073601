"""A pure simulation of sites sharing one lease key, for property tests of AbsoluteConsistency.

The lease key is a `Store` (NATS KV semantics); a site cut off from the majority can neither
write nor watch.

`World` runs real strategy objects on it. Time is a number. Timers fire exactly at `wake_at`;
a request commits when served and its answer may come later (or never: the actor then
reports a timeout after `request_timeout`, though the write happened); a fence completes at
the latest ``stop_grace + fence_slack`` after it was ordered, a graceful stop may take far
longer. Safety is asserted after every single step.

Drivers fail too: a probe fails on a running copy, a stop or fence fails (the copy runs on),
a crashed agent leaves its copy behind. What the model assumes, as the real system does: a
tokened copy has a tether that holds the last fence deadline the agent handed over for that
token and has the copy down ``stop_grace + fence_slack`` after it, whatever the agent's own
fences did; a new incarnation deletes the old deadlines (its old tethers fence at once) and
fences whatever is left before it takes part in an election.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from harmony.strategies import Command, Event, FailoverTopology, Params
from harmony.strategies.absolute import AbsoluteConsistency
from harmony.strategies.commands import (
    AcquireLease,
    FenceCopy,
    Promote,
    ReleaseLease,
    RenewLease,
    StartCopy,
    StopCopy,
    WatchLease,
)
from harmony.strategies.events import (
    KEY_ABSENT,
    AcquireFailed,
    LeaseAcquired,
    LeaseActorRestarted,
    LeaseRead,
    LeaseReleased,
    LeaseRenewed,
    PeerAlive,
    PeerSilent,
    ReleaseFailed,
    RenewFailed,
    RenewRefused,
    Tick,
    WorkloadExited,
    WorkloadFenced,
    WorkloadStarted,
    WorkloadStopped,
    WorkloadUnknown,
)
from harmony.strategies.state import Decision
from harmony.strategies.tables import PeerStatus
from support.lease_store import Store

LeaseCommand = AcquireLease | RenewLease | ReleaseLease
EXPIRY_LAG = 0.0  # expiry exactly at TTL: the worst case for safety (real: about +0.25 s)


class SafetyViolation(AssertionError):
    pass


@dataclass
class Proc:
    """The workload process of one site, as the driver really has it."""

    token: int | None
    phase: str = "starting"  # starting, running, stopping, fencing
    down_by: float | None = None  # when the stop or fence completes at the latest
    leftover: bool = False  # its agent crashed: only its tether or a new incarnation stop it

    @property
    def active(self) -> bool:
        return self.token is not None


@dataclass
class Request:
    cmd: LeaseCommand
    sent_at: float
    answer: Event | None = None  # committed, answer on its way back


@dataclass
class Node:
    name: str
    decision: Decision | None = None  # None: the site is down
    connected: bool = True
    proc: Proc | None = None
    requests: deque[Request] = field(default_factory=deque)
    watch: deque[Event] = field(default_factory=deque)
    incarnation: int = 0
    deadlines: dict[int, float] = field(default_factory=dict)  # tether files: token -> deadline
    confirm: Event | None = None  # a stop/fence ordered with no copy: the driver's answer


class World:
    def __init__(
        self,
        n: int,
        params: Params,
        *,
        fence_slack: float,
        request_timeout: float,
        warm: bool = False,
        check_timings: bool = True,
    ) -> None:
        self.names = [f"s{i}" for i in range(n)]
        self.topology = FailoverTopology(self.names[0], tuple(self.names[1:]), warm)
        self.strategy = AbsoluteConsistency(
            params, check=check_timings, fence_slack=fence_slack, request_timeout=request_timeout
        )
        self.params = params
        self.fence_slack = fence_slack
        self.request_timeout = request_timeout
        self.slow_stop = 2 * params.lease_ttl  # a graceful stop may take this long
        self.now = 0.0
        self.store = Store(params.lease_ttl)
        self.nodes = {name: Node(name) for name in self.names}
        self.ghosts: list[tuple[str, Request]] = []  # requests nobody waits for any more
        self.tokens: list[tuple[str, int]] = []
        for name in self.names:
            self.boot(name)

    # -- plumbing -----------------------------------------------------------------------
    def boot(self, name: str) -> None:
        node = self.nodes[name]
        node.incarnation += 1
        proc = node.proc
        if proc is not None and proc.token is not None:
            # DeadlineHandoff.reset deletes the old deadlines: their tethers fence at once
            # (never later than they would have at the deadline they held).
            bounds = (proc.down_by, self.tether_down_by(node), self.now + self.fence_time)
            proc.down_by = min(b for b in bounds if b is not None)
        node.deadlines.clear()
        node.decision = self.strategy.start(name, self.topology, self.now)
        self.offer(node)
        self.apply(node, node.decision.commands)

    def feed(self, name: str, event: Event) -> None:
        node = self.nodes[name]
        if node.decision is None:
            return
        node.decision = self.strategy.step(node.decision.state, event, self.now)
        self.offer(node)
        self.apply(node, node.decision.commands)
        self.check()

    @property
    def fence_time(self) -> float:
        return self.params.stop_grace + self.fence_slack

    def offer(self, node: Node) -> None:
        """What WorkloadSupervisor.update_tether does after every decision."""
        assert node.decision is not None
        lease = node.decision.state.lease
        deadline = lease.deadline(self.params.fence_offset)
        if lease.token is not None and deadline is not None:
            node.deadlines[lease.token] = deadline

    def tether_down_by(self, node: Node) -> float | None:
        """When the tether of this node's active copy has it down at the latest."""
        proc = node.proc
        if proc is None or proc.token is None:
            return None
        deadline = node.deadlines.get(proc.token)
        if deadline is None:  # no deadline file: the tether does not let it run
            return self.now if proc.leftover else None
        return deadline + self.fence_time

    def apply(self, node: Node, commands: tuple[Command, ...]) -> None:
        for cmd in commands:
            assert cmd.reason, f"{cmd} has no reason"
            proc = node.proc
            if isinstance(cmd, StartCopy):
                assert proc is None, f"{node.name}: start while a copy exists"
                node.proc = Proc(cmd.token)
                if cmd.token is not None:
                    self.activated(node.name, cmd.token)
            elif isinstance(cmd, Promote):
                assert proc is not None and proc.phase == "running" and not proc.active
                proc.token = cmd.token
                self.activated(node.name, cmd.token)
            elif isinstance(cmd, StopCopy):
                if proc is None:
                    node.confirm = WorkloadStopped()
                else:
                    proc.phase, proc.down_by = "stopping", self.now + self.slow_stop
            elif isinstance(cmd, FenceCopy):
                if proc is None:
                    node.confirm = WorkloadFenced()  # e.g. the boot fence: nothing was left
                else:  # a leftover of an earlier incarnation is this driver's now
                    proc.phase, proc.leftover = "fencing", False
                    proc.down_by = min(proc.down_by or math.inf, self.now + self.fence_time)
            elif isinstance(cmd, AcquireLease | RenewLease | ReleaseLease):
                assert not node.requests, f"{node.name}: two lease requests in flight"
                node.requests.append(Request(cmd, self.now))
            elif isinstance(cmd, WatchLease) and node.connected:
                node.watch.append(self.store.observation())

    def activated(self, name: str, token: int) -> None:
        if self.tokens:
            last_site, last = self.tokens[-1]
            assert token >= last, f"token went back: {last} then {token}"
            assert token > last or last_site == name, f"token {token} reused by {name}"
        self.tokens.append((name, token))

    def broadcast(self) -> None:
        for node in self.nodes.values():
            if node.decision is not None and node.connected:
                node.watch.append(self.store.observation())

    # -- the invariants ------------------------------------------------------------------
    def active_copies(self) -> list[str]:
        return [n.name for n in self.nodes.values() if n.proc is not None and n.proc.active]

    def check(self) -> None:
        active = self.active_copies()
        if len(active) > 1:
            raise SafetyViolation(f"t={self.now:.3f}: active copies on {active}")
        off = self.params.fence_offset
        believers = [
            n.name
            for n in self.nodes.values()
            if n.decision is not None
            and n.decision.state.driver.active
            and n.decision.state.lease.valid(self.now, off)
        ]
        if len(believers) > 1:
            raise SafetyViolation(f"t={self.now:.3f}: {believers} all believe they hold the lease")

    # -- lease requests ------------------------------------------------------------------
    def serve(self, name: str, *, delay: bool = False, drop: bool = False) -> None:
        """The oldest unserved request reaches the server; its answer comes back now, later
        (`delay`, see `answer`), or never (`drop`: lost, the actor times out)."""
        node = self.nodes[name]
        req = next((r for r in node.requests if r.answer is None), None)
        if req is None:
            return
        if not node.connected:
            return  # stays unanswered until the actor's timeout
        if drop:
            node.requests.remove(req)
            self.ghosts.append((name, req))  # may still commit later
            return
        req.answer = self.commit(name, req)
        if not delay:
            self.answer(name)

    def answer(self, name: str) -> None:
        node = self.nodes[name]
        if node.requests and node.requests[0].answer is not None:
            req = node.requests.popleft()
            assert req.answer is not None
            self.feed(name, req.answer)

    def commit(self, name: str, req: Request) -> Event:
        cmd, store = req.cmd, self.store
        if not store.available:
            return self.failure(req, "no stream leader")
        if isinstance(cmd, AcquireLease):
            rev = store.write(name, cmd.expected_revision, self.now, self.nodes[name].incarnation)
            if rev is None:
                return AcquireFailed("wrong last sequence", conflict=True)
            others = [n for n in self.active_copies() if n != name]
            if others:
                raise SafetyViolation(f"t={self.now:.3f}: {name} took the lease while {others} run")
            self.broadcast()
            return LeaseAcquired(rev, req.sent_at)
        if isinstance(cmd, RenewLease):
            rev = store.write(name, cmd.revision, self.now, self.nodes[name].incarnation)
            if rev is None:
                read = None
                if store.available and store.revision is None:
                    read = LeaseRead(KEY_ABSENT, None, False)  # the marker aged out
                elif store.available and store.revision is not None:
                    ours = store.owner == (name, self.nodes[name].incarnation)
                    read = LeaseRead(store.revision, store.holder, ours)
                return RenewRefused(cmd.revision, "wrong last sequence", read)
            self.broadcast()
            return LeaseRenewed(rev, req.sent_at)
        if store.delete(cmd.revision):
            self.broadcast()
            return LeaseReleased()
        return ReleaseFailed("wrong last sequence", conflict=True)

    @staticmethod
    def failure(req: Request, why: str) -> Event:
        if isinstance(req.cmd, AcquireLease):
            return AcquireFailed(why)
        if isinstance(req.cmd, RenewLease):
            return RenewFailed(why, req.sent_at)  # timed out: it may still land
        return ReleaseFailed(why)

    def commit_ghost(self, index: int) -> None:
        if self.ghosts:
            name, req = self.ghosts.pop(index % len(self.ghosts))
            self.commit(name, req)  # committed or not: nobody hears the answer

    # -- faults and the driver -----------------------------------------------------------
    def crash(self, name: str) -> None:
        """The agent dies; its copy is left behind for its tether (or the next incarnation)."""
        node = self.nodes[name]
        node.decision, node.confirm = None, None
        if node.proc is not None:
            node.proc.leftover = True
            if node.proc.phase in ("stopping", "fencing") and node.proc.token is None:
                node.proc.down_by = None  # nobody finishes a passive copy's stop
        self.ghosts += [(name, r) for r in node.requests if r.answer is None]
        node.requests.clear()
        node.watch.clear()
        self.check()

    def lease_actor_restart(self, name: str) -> None:
        """The lease actor dies: its request in flight may still commit; nobody answers."""
        node = self.nodes[name]
        if node.decision is None:
            return
        self.ghosts += [(name, r) for r in node.requests if r.answer is None]
        node.requests.clear()
        self.feed(name, LeaseActorRestarted())

    def cut(self, name: str, connected: bool) -> None:
        node = self.nodes[name]
        was, node.connected = node.connected, connected
        if connected and not was and node.decision is not None:
            node.watch.append(self.store.observation())  # watch resumes with the current value

    def deliver_watch(self, name: str) -> None:
        node = self.nodes[name]
        if node.watch and node.connected:
            self.feed(name, node.watch.popleft())

    def expire(self) -> None:
        if self.store.may_expire(self.now):
            self.store.expire()
            self.broadcast()

    def drive(self, name: str, *, fail: bool = False, restart: bool = False) -> None:
        """The driver finishes what it was doing (or the copy exits on its own)."""
        node = self.nodes[name]
        proc = node.proc
        if node.decision is None:
            return
        if node.confirm is not None and (proc is None or proc.leftover):
            event, node.confirm = node.confirm, None
            if proc is None:
                self.feed(name, event)
            return
        if proc is None or proc.leftover:
            return
        if fail and proc.phase == "running":
            if restart:
                proc.phase = "starting"
            else:
                node.proc = None
            self.feed(name, WorkloadExited(code=1, restarting=restart))
        elif proc.phase == "starting":
            proc.phase = "running"
            self.feed(name, WorkloadStarted())
        elif proc.phase in ("stopping", "fencing"):
            fenced = proc.phase == "fencing"
            node.proc = None
            self.feed(name, WorkloadFenced() if fenced else WorkloadStopped())

    def driver_fails(self, name: str, how: str) -> None:
        """A fact the driver cannot establish: the copy may run (and does, here).

        `probe`: the running copy's probe fails; `halt`: a stop or fence fails and the copy
        runs on (its tether still has it down by its deadline); `confirm`: a stop or fence
        ordered with no copy cannot be confirmed; `recover`: a probe succeeds again.
        """
        node = self.nodes[name]
        proc = node.proc
        if node.decision is None:
            return
        if how == "probe" and proc is not None and not proc.leftover and proc.phase == "running":
            self.feed(name, WorkloadUnknown("probe failed"))
        elif how == "halt" and proc is not None and proc.phase in ("stopping", "fencing"):
            proc.phase, proc.down_by = "running", None
            if not proc.leftover:
                self.feed(name, WorkloadUnknown(f"{proc.phase} failed"))
        elif how == "confirm" and node.confirm is not None:
            node.confirm = None
            self.feed(name, WorkloadUnknown("fence could not be confirmed"))
        elif (
            how == "recover" and proc is not None and not proc.leftover and proc.phase == "running"
        ):
            self.feed(name, WorkloadStarted())

    # -- time ----------------------------------------------------------------------------
    def advance(self, dt: float, *, healthy: bool = False) -> None:
        """Move time forward, firing timers, kills, timeouts and expiry exactly when due.

        `healthy`: everything that can happen promptly does (see `pump`) at every instant.
        """
        target = self.now + dt
        while True:
            if healthy:
                self.pump()
            due = self._next_due()
            if due is None or due > target:
                self.now = target
                self.check()
                return
            self.now = max(self.now, due)
            self._fire()

    def _next_due(self) -> float | None:
        times: list[float] = []
        for node in self.nodes.values():
            if node.proc is not None and node.proc.down_by is not None:
                times.append(node.proc.down_by)
            tether = self.tether_down_by(node)
            if tether is not None:
                times.append(tether)
            if node.decision is not None and node.decision.wake_at is not None:
                times.append(node.decision.wake_at)
            times += [r.sent_at + self.request_timeout for r in node.requests]
        if self.store.holder is not None and self.store.available:
            times.append(self.store.written_at + self.store.ttl + EXPIRY_LAG)
        return min(times, default=None)

    def _fire(self) -> None:
        now = self.now
        for node in self.nodes.values():  # SIGKILL after the grace, a slow stop ends, a tether
            proc = node.proc
            if proc is None:
                continue
            tether = self.tether_down_by(node)
            by_tether = tether is not None and tether <= now
            if not by_tether and (proc.down_by is None or proc.down_by > now):
                continue
            node.proc = None
            if proc.leftover or node.decision is None:
                continue  # nobody is told: a new incarnation confirms it with its boot fence
            stopped = proc.phase == "stopping" and not by_tether
            self.feed(node.name, WorkloadStopped() if stopped else WorkloadFenced())
        if (
            self.store.holder is not None
            and now >= self.store.written_at + self.store.ttl + EXPIRY_LAG
        ):
            self.expire()
        for node in self.nodes.values():  # the actor's request timeout
            while node.requests and node.requests[0].sent_at + self.request_timeout <= now:
                req = node.requests.popleft()
                if req.answer is None:
                    self.ghosts.append((node.name, req))
                self.feed(node.name, self.failure(req, "timeout"))
        for node in self.nodes.values():  # timers
            wake = None if node.decision is None else node.decision.wake_at
            if wake is not None and wake <= now:
                self.feed(node.name, Tick())

    def pump(self, *, truth: bool = False) -> None:
        """At this instant: serve and answer every request, deliver every watch event, finish
        every start (fences take their full grace, graceful stops longer); `truth`: tell every
        site the truth about its peers."""
        for _ in range(1000):
            busy = False
            for node in self.nodes.values():
                if node.decision is None:
                    continue
                if truth:
                    self.tell_truth(node)
                if node.connected and node.requests:
                    busy = True
                    self.serve(node.name)
                    self.answer(node.name)
                if node.watch and node.connected:
                    busy = True
                    self.deliver_watch(node.name)
                if node.confirm is not None and node.proc is None:
                    busy = True
                    self.drive(node.name)
                if node.proc is not None and node.proc.phase == "starting":
                    busy = True
                    self.drive(node.name)
            if not busy:
                return
        raise AssertionError("the sites never quiesce")

    def tell_truth(self, node: Node) -> None:
        for peer in self.names:
            if peer == node.name or node.decision is None:
                continue
            other = self.nodes[peer].decision
            up = other is not None and not other.state.done  # done agents exit
            up = up and self.nodes[peer].connected == node.connected
            if node.decision.state.status(peer) is not (
                PeerStatus.ALIVE if up else PeerStatus.SILENT
            ):
                self.feed(node.name, PeerAlive(peer) if up else PeerSilent(peer))

    # -- helpers for liveness ------------------------------------------------------------
    def active_sites(self) -> list[str]:
        """Sites whose active copy is up and running."""
        return [
            n.name
            for n in self.nodes.values()
            if n.proc is not None and n.proc.active and n.proc.phase == "running"
        ]

    def settle(self, duration: float) -> None:
        """Heal everything and let the healthy world run for `duration`."""
        for name in self.names:
            self.cut(name, True)
        self.store.available = True
        end = self.now + duration
        while self.now < end:
            self.pump(truth=True)
            self.advance(min(0.5, end - self.now), healthy=True)
