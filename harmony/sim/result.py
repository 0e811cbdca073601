"""The outcome of one simulation: the merged history, what the checkers found, cleanup."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harmony.actors.journal import JournalEvent
from harmony.sim.checks import Recovery, Violation
from harmony.sim.scenario import Scenario


@dataclass
class SimResult:
    scenario: Scenario
    workdir: Path
    history_path: Path
    events: list[JournalEvent]
    violations: list[Violation]
    recoveries: list[Recovery]
    started: float
    ended: float
    expected: list[Violation] = field(default_factory=list)
    """Violations the scenario expects (a known limitation it documents)."""
    seed: int | None = None
    interrupted: bool = False
    error: str = ""
    leftovers: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.violations or self.interrupted or self.error or self.leftovers)
