"""A single simulated site for unit tests: feed events, advance time, read the commands."""

from __future__ import annotations

from collections.abc import Iterable

from harmony.strategies import (
    Command,
    Decision,
    Event,
    FailoverStrategy,
    FailoverTopology,
    WorkloadState,
)
from harmony.strategies.commands import FenceCopy, RecordDivergence, RecordEvent
from harmony.strategies.events import Tick, WorkloadFenced

TOPO = FailoverTopology.of("a", "b", "c")


class Site:
    """Drives one strategy like the actor layer would; time is a number the test sets."""

    def __init__(
        self,
        strategy: FailoverStrategy,
        site: str = "a",
        topology: FailoverTopology = TOPO,
        now: float = 0.0,
        *,
        boot_fenced: bool = True,
    ) -> None:
        self.strategy = strategy
        self.now = now
        self.decision: Decision = strategy.start(site, topology, now)
        self.boot: list[Command] = list(self.decision.commands)
        self.log: list[Command] = list(self.decision.commands)
        self.timeline: list[tuple[float, Command]] = [(now, c) for c in self.decision.commands]
        if boot_fenced and any(isinstance(c, FenceCopy) for c in self.boot):
            # What an earlier incarnation left is gone: the driver confirms the boot fence.
            self.feed(WorkloadFenced())

    @property
    def state(self) -> WorkloadState:
        return self.decision.state

    def feed(self, event: Event, at: float | None = None) -> list[Command]:
        if at is not None:
            assert at >= self.now, "time never goes back"
            self.now = at
        self.decision = self.strategy.step(self.state, event, self.now)
        self.log.extend(self.decision.commands)
        self.timeline.extend((self.now, c) for c in self.decision.commands)
        return list(self.decision.commands)

    def times_of(self, kind: type) -> list[float]:
        """When commands of `kind` were sent."""
        return [t for t, c in self.timeline if isinstance(c, kind)]

    def feed_all(self, events: Iterable[Event]) -> list[Command]:
        out: list[Command] = []
        for event in events:
            out += self.feed(event)
        return out

    def advance(self, until: float) -> list[Command]:
        """Deliver a Tick at every wake_at up to `until` (a perfect timer), then move to it."""
        out: list[Command] = []
        while self.decision.wake_at is not None and self.decision.wake_at <= until:
            out += self.feed(Tick(), at=self.decision.wake_at)
        self.now = max(self.now, until)
        return out


def actions(commands: Iterable[Command]) -> list[Command]:
    """The commands that change the world (records left out)."""
    return [c for c in commands if not isinstance(c, RecordEvent | RecordDivergence)]


def kinds(commands: Iterable[Command]) -> list[str]:
    return [type(c).__name__ for c in actions(commands)]
