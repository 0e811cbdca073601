"""Drivers: what really starts, stops, fences and probes a workload.

The WorkloadActor builds one with :func:`make_driver` from the workload's config and talks to
it only through the :class:`Driver` methods and the :class:`DriverEvent` callback.

The names below are loaded on first use, not with the package: a copy's keeper (its tether,
`python -m harmony.actors.drivers.tether_main`) is one process per copy and needs only the
containment modules. Loading the drivers, the config and the strategies with it cost each
keeper about 0.3 s of CPU and 15 MB.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not `typing`'s: the keeper loads this package
if TYPE_CHECKING:
    from typing import Any

    from .base import Driver, DriverEvent, DriverState, EventCallback
    from .factory import make_driver
    from .hooks import HooksDriver
    from .process import ProcessDriver
    from .tether import TetherSpec

_WHERE = {
    "Driver": "base",
    "DriverEvent": "base",
    "DriverState": "base",
    "EventCallback": "base",
    "HooksDriver": "hooks",
    "ProcessDriver": "process",
    "TetherSpec": "tether",
    "make_driver": "factory",
}

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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
