"""What a driver's report means to the strategy: one typed event per driver state.

Nothing is read back from free text: `DriverEvent.restarting` says whether the driver brings
an exited copy back, and `DriverState.UNKNOWN` (the copy may still run) becomes
`WorkloadUnknown`, never a stop.
"""

from __future__ import annotations

import os
from typing import Final

from harmony.actors.drivers import DriverEvent, DriverState
from harmony.strategies.events import (
    Event,
    WorkloadExited,
    WorkloadFenced,
    WorkloadStarted,
    WorkloadStopped,
    WorkloadUnknown,
)

DRIVER_EVENTS: Final[
    dict[DriverState, type[WorkloadStarted | WorkloadStopped | WorkloadFenced]]
] = {
    DriverState.RUNNING: WorkloadStarted,
    DriverState.STOPPED: WorkloadStopped,
    DriverState.FENCED: WorkloadFenced,
}


def driver_event(ev: DriverEvent) -> Event | None:
    """The strategy's event for a driver report (None: a step the strategy does not track,
    such as starting or stopping)."""
    if ev.state is DriverState.EXITED:
        return WorkloadExited(ev.exit_code, restarting=ev.restarting)
    if ev.state is DriverState.UNKNOWN:
        return WorkloadUnknown(ev.detail or "the driver cannot tell whether the copy runs")
    event = DRIVER_EVENTS.get(ev.state)
    return None if event is None else event()


def copy_gone(ev: DriverEvent) -> bool:
    """The report is a fact that nothing of this copy is left (and nothing comes back)."""
    return ev.state in (DriverState.STOPPED, DriverState.FENCED) or (
        ev.state is DriverState.EXITED and not ev.restarting
    )


def free_cpu() -> float:
    """best-score: free CPU of this site (cpus - load), higher is better."""
    try:
        return round((os.cpu_count() or 1) - os.getloadavg()[0], 3)
    except OSError:
        return 0.0
