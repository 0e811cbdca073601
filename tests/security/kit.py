"""Helpers of the security tests (the TUI's `wait_for`: `tui` is another test package)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from textual.pilot import Pilot


async def wait_for(
    pilot: Pilot[None], predicate: Callable[[], object], timeout: float, message: str
) -> object:
    """Run the app until `predicate()` is truthy, or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s: {message}")
        await pilot.pause(0.1)
    return result
