"""Helpers of the TUI tests: timings, the workload command, waiting on a running app."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from harmony.config import Timings

DATA = Path(__file__).parent / "data"
WORKLOAD_CMD = [sys.executable, "-m", "harmony.sim.example_workload"]
# Safe (the config check passes) but short, so silence and failover take seconds.
FAST = Timings(
    heartbeat_interval=0.25,
    suspect_after=1.5,
    silent_after=2.5,
    lease_ttl=4.0,
    renew_interval=0.5,
    fence_margin=1.5,
    stop_grace=0.5,
    ask_timeout=3.0,
)


async def wait_for(
    pilot: Pilot[None],
    predicate: Callable[[], object],
    timeout: float,
    message: Callable[[], str] | str = "condition not met",
) -> object:
    """Run the app until `predicate()` is truthy (returned) or fail after `timeout` s.

    The app keeps running between checks (pilot.pause), so feed updates get applied."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            pytest.fail(f"timed out after {timeout:g} s: {text}")
        await pilot.pause(0.1)
