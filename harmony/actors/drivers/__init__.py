"""Drivers: what really starts, stops, fences and probes a workload.

The WorkloadActor builds one with :func:`make_driver` from the workload's config and talks to
it only through the :class:`Driver` methods and the :class:`DriverEvent` callback.
"""

from __future__ import annotations

from typing import Any

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


def make_driver(config: DriverConfig, **options: Any) -> ProcessDriver | HooksDriver:
    """The driver for this config (the config's ``kind`` tag chose its type).

    `options` are the driver's own keyword arguments, declared once in `Driver`: workload,
    site, log_dir, on_event, and optionally monotonic, stop_grace, containment and tether.
    """
    if isinstance(config, ProcessDriverConfig):
        return ProcessDriver(config=config, **options)
    if isinstance(config, HooksDriverConfig):
        return HooksDriver(config=config, **options)
    raise TypeError(f"no driver for config type {type(config).__name__}")
