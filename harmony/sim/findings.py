"""What the checkers report: violations (with when, where and why) and recovery times.

A leaf of `harmony.sim` (the checkers of `checks` and `liveness` share it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harmony.actors.journal import JournalEvent

SIM = "sim"


@dataclass(frozen=True)
class Violation:
    checker: str
    workload: str
    at: float
    message: str
    sites: tuple[str, ...] = ()
    explain: str = ""
    """What the journals said meanwhile (they may say a copy stopped that kept running)."""


@dataclass(frozen=True)
class Recovery:
    """How long the mesh took to reach the desired state after one fault."""

    fault: JournalEvent
    workload: str
    took: float | None
    """None: a newer fault came first (or the history ended) before it was reached."""


def fault_events(events: Sequence[JournalEvent]) -> list[JournalEvent]:
    return [e for e in events if e.incarnation == SIM and "expect" in e.detail]
