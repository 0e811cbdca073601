"""`make_driver`: the driver a workload's config asks for."""

from __future__ import annotations

from typing import Any

from harmony.config import DriverConfig, HooksDriverConfig, ProcessDriverConfig

from .hooks import HooksDriver
from .process import ProcessDriver


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
