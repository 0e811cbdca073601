"""Time is injected: actors take a Clock so tests and simulations can reason about it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


@dataclass(frozen=True)
class SystemClock:
    """`time.monotonic` is one clock for every process of a Linux machine, so a simulation can
    compare monotonic stamps taken by different sites directly."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()
