"""A pure simulation of sites running SplitBrainAllowed across partitions.

Sites are split into groups (sides of a partition): a site sees the sites of its own group as
alive and everyone else as silent, and sees the copies running in its group. Deliveries of
those views are separate steps, so they can be late; `settle` delivers everything truthfully
until nothing changes, which is when the properties are checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harmony.strategies import Command, Event, FailoverTopology, Params
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
    Copy,
    PeerAlive,
    PeerCopiesSeen,
    PeerSilent,
    Tick,
    WorkloadExited,
    WorkloadStarted,
    WorkloadStopped,
)
from harmony.strategies.split_brain import SplitBrainAllowed
from harmony.strategies.state import Decision
from harmony.strategies.tables import PeerStatus


@dataclass
class Proc:
    started_at: float
    score: float
    phase: str = "starting"  # starting, running, stopping


@dataclass
class Node:
    name: str
    group: int = 0
    decision: Decision | None = None
    proc: Proc | None = None
    seen_copies: tuple[Copy, ...] | None = field(default=None)


class SbaWorld:
    def __init__(self, n: int, params: Params) -> None:
        self.names = [f"s{i}" for i in range(n)]
        self.topology = FailoverTopology(self.names[0], tuple(self.names[1:]))
        self.strategy = SplitBrainAllowed(params)
        self.params = params
        self.now = 0.0
        self.starts = 0
        self.divergences = 0
        self.nodes = {name: Node(name) for name in self.names}
        for name in self.names:
            self.boot(name)

    def boot(self, name: str) -> None:
        node = self.nodes[name]
        node.decision = self.strategy.start(name, self.topology, self.now)
        node.seen_copies = None
        self.apply(node, node.decision.commands)

    def feed(self, name: str, event: Event) -> bool:
        """Step one site; True when it sent any command that changes the world."""
        node = self.nodes[name]
        if node.decision is None:
            return False
        node.decision = self.strategy.step(node.decision.state, event, self.now)
        return self.apply(node, node.decision.commands)

    def apply(self, node: Node, commands: tuple[Command, ...]) -> bool:
        acted = False
        for cmd in commands:
            assert cmd.reason
            assert not isinstance(
                cmd, AcquireLease | RenewLease | ReleaseLease | WatchLease | FenceCopy | Promote
            ), f"SplitBrainAllowed never uses {cmd}"
            if isinstance(cmd, StartCopy):
                assert node.proc is None and cmd.token is None and not cmd.passive
                self.starts += 1
                score = float((self.names.index(node.name) * 7 + self.starts * 3) % 4)
                node.proc = Proc(self.now, score)
                acted = True
            elif isinstance(cmd, StopCopy):
                assert node.proc is not None
                node.proc.phase = "stopping"
                acted = True
            else:
                self.divergences += type(cmd).__name__ == "RecordDivergence"
        return acted

    # -- what a site can see -----------------------------------------------------------
    def up(self, name: str) -> bool:
        d = self.nodes[name].decision
        return d is not None and not d.state.done  # done agents exit

    def visible(self, viewer: str, peer: str) -> bool:
        return self.up(peer) and self.nodes[peer].group == self.nodes[viewer].group

    def copies_for(self, viewer: str) -> tuple[Copy, ...]:
        return tuple(
            Copy(n.name, n.proc.started_at, n.proc.score)
            for n in self.nodes.values()
            if n.proc is not None
            and n.proc.phase in ("starting", "running")
            and (n.name == viewer or self.visible(viewer, n.name))
        )

    def tell_truth(self, name: str) -> bool:
        node, acted = self.nodes[name], False
        for peer in self.names:
            if peer == name or node.decision is None:
                continue
            alive = self.visible(name, peer)
            want = PeerStatus.ALIVE if alive else PeerStatus.SILENT
            if node.decision.state.status(peer) is not want:
                acted |= self.feed(name, PeerAlive(peer) if alive else PeerSilent(peer))
        return acted

    def tell_copies(self, name: str) -> bool:
        node = self.nodes[name]
        copies = self.copies_for(name)
        if node.decision is None or copies == node.seen_copies:
            return False
        node.seen_copies = copies
        return self.feed(name, PeerCopiesSeen(copies))

    # -- faults, the driver, time ------------------------------------------------------
    def crash(self, name: str) -> None:
        node = self.nodes[name]
        node.decision, node.proc = None, None

    def drive(self, name: str, *, fail: bool = False) -> bool:
        node = self.nodes[name]
        proc = node.proc
        if proc is None or node.decision is None:
            return False
        if fail and proc.phase == "running":
            node.proc = None
            self.feed(name, WorkloadExited(code=1))
        elif proc.phase == "starting":
            proc.phase = "running"
            self.feed(name, WorkloadStarted())
        elif proc.phase == "stopping":
            node.proc = None
            self.feed(name, WorkloadStopped())
        else:
            return False
        return True

    def advance(self, dt: float) -> None:
        target = self.now + dt
        while True:
            wakes = [
                n.decision.wake_at
                for n in self.nodes.values()
                if n.decision is not None and n.decision.wake_at is not None
            ]
            due = min(wakes, default=None)
            if due is None or due > target:
                self.now = target
                return
            self.now = max(self.now, due)
            for n in self.nodes.values():
                wake = None if n.decision is None else n.decision.wake_at
                if wake is not None and wake <= self.now:
                    self.feed(n.name, Tick())

    def settle(self) -> None:
        """Deliver the truth and finish all driver work until nothing changes, letting time
        pass (sync grace, cooldowns) when the sites are quiet."""
        quiet_rounds = 0
        for _ in range(200):
            acted = False
            for name in self.names:
                acted |= self.tell_truth(name)
                acted |= self.tell_copies(name)
                acted |= self.drive(name)
            if acted:
                quiet_rounds = 0
                continue
            quiet_rounds += 1
            if quiet_rounds > 1:
                return
            self.advance(max(self.params.sync_grace, self.params.failed_cooldown) + 0.1)
        raise AssertionError("split-brain sites never settle")

    def running_in(self, group: int) -> list[str]:
        return [
            n.name
            for n in self.nodes.values()
            if n.group == group and n.proc is not None and n.proc.phase == "running"
        ]

    def eligible_in(self, group: int) -> list[str]:
        return [
            n.name
            for n in self.nodes.values()
            if n.group == group and n.decision is not None and not n.decision.state.shutting_down
        ]
