"""Drivers: what really starts, stops, fences and probes a workload.

The WorkloadActor builds one with :func:`make_driver` from the workload's config and talks to
it only through the :class:`Driver` methods and the :class:`DriverEvent` callback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from harmony.config import DriverConfig, HooksDriverConfig, ProcessDriverConfig

from .base import Driver, DriverEvent, DriverState, EventCallback
from .hooks import HooksDriver
from .process import ProcessDriver
from .tether import TetherSpec

__all__ = [
    "Driver",
    "DriverEvent",
    "DriverState",
    "EventCallback",
    "HooksDriver",
    "ProcessDriver",
    "TetherSpec",
    "make_driver",
]


def make_driver(
    config: DriverConfig,
    *,
    workload: str,
    site: str,
    log_dir: Path,
    on_event: EventCallback,
    monotonic: Callable[[], float] = time.monotonic,
    stop_grace: float = 2.0,
    containment: str = "",
    tether: TetherSpec | None = None,
) -> ProcessDriver | HooksDriver:
    """The driver for this config (the config's ``kind`` tag chose its type).

    `containment`: the id every process of the workload carries (`containment_id`).
    `tether`: every start with a token gets a watcher outside the agent, so the copy is
    fenced at its fence deadline even when the agent cannot do it.
    """
    rest = (log_dir, on_event, monotonic, stop_grace)
    if isinstance(config, ProcessDriverConfig):
        return ProcessDriver(workload, site, config, *rest, containment=containment, tether=tether)
    if isinstance(config, HooksDriverConfig):
        return HooksDriver(workload, site, config, *rest, containment=containment, tether=tether)
    raise TypeError(f"no driver for config type {type(config).__name__}")
