"""The outcome of one simulation: the merged history, what the checkers found, cleanup."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harmony.actors.journal import JournalEvent
from harmony.sim.checks import JOURNAL_ONLY, Evaluation, Recovery, Violation
from harmony.sim.history import Interval
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
    residuals: list[Violation] = field(default_factory=list)
    """Overlaps within the documented residual risk (`checks.check_absolute`): shown, not
    failed."""
    intervals: dict[str, list[Interval]] | None = None
    """workload -> what the checks counted as active (None: the journal's view)"""
    sources: dict[str, str] = field(default_factory=dict)
    """workload -> what its checks rest on ("records + scans", ..., or journal only)"""

    @classmethod
    def checked(
        cls,
        scenario: Scenario,
        workdir: Path,
        history_path: Path,
        events: list[JournalEvent],
        found: Evaluation,
        started: float,
        ended: float,
        **run: Any,
    ) -> SimResult:
        """The result of checking `events` (what `checks.evaluate` found), with what `run`
        adds of the run itself (seed, interrupted, error, leftovers)."""
        return cls(
            scenario,
            workdir,
            history_path,
            events,
            found.violations,
            found.recoveries,
            started,
            ended,
            expected=found.expected,
            residuals=found.residuals,
            intervals=found.intervals,
            sources=found.sources,
            **run,
        )

    @property
    def ok(self) -> bool:
        return not (self.violations or self.interrupted or self.error or self.leftovers)

    @property
    def journal_only(self) -> list[str]:
        """Workloads checked on the journal alone: a pass for them is not a proof."""
        return [w for w, s in self.sources.items() if s == JOURNAL_ONLY] or (
            [w.name for w in self.scenario.workloads] if not self.sources else []
        )
