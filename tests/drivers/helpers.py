"""Test helpers: wait on conditions with deadlines, record driver events, check pids."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from harmony.actors.drivers import DriverEvent, DriverState


def wait_until(pred: Callable[[], object], timeout: float = 5.0, message: str = "") -> None:
    """Poll ``pred`` until it is truthy; fail with ``message`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {message or pred}")
        time.sleep(0.01)


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (orphans may never be reaped here)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :][:1] not in (b"Z", b"X")


def read_pid(path: Path, timeout: float = 5.0) -> int:
    """Wait for a pid file written by a test process and return the pid in it."""
    wait_until(lambda: path.exists() and path.read_text().strip(), timeout, f"{path} written")
    return int(path.read_text().strip())


def line_count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


class Recorder:
    """The driver's ``on_event``: keeps every event, thread-safely."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[DriverEvent] = []

    def __call__(self, event: DriverEvent) -> None:
        with self._lock:
            self.events.append(event)

    def snapshot(self) -> list[DriverEvent]:
        with self._lock:
            return list(self.events)

    def states(self) -> list[DriverState]:
        return [e.state for e in self.snapshot()]

    def count(self, state: DriverState) -> int:
        return self.states().count(state)

    def last(self, state: DriverState) -> DriverEvent:
        matches = [e for e in self.snapshot() if e.state is state]
        assert matches, f"no {state} event in {self.states()}"
        return matches[-1]

    def wait_count(self, state: DriverState, n: int, timeout: float = 5.0) -> DriverEvent:
        """Wait until at least ``n`` events of ``state`` were seen; return the n-th."""
        wait_until(lambda: self.count(state) >= n, timeout, f"{n}x {state}; saw {self.states()}")
        return [e for e in self.snapshot() if e.state is state][n - 1]


def stays(pred: Callable[[], object], duration: float, message: str = "") -> None:
    """Assert ``pred`` holds for all of ``duration``: the one bounded wait a negative check
    (nothing restarts, nothing is reported) cannot avoid. Fails as soon as it breaks."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        assert pred(), message or f"{pred} stopped holding"
        time.sleep(0.01)
    assert pred(), message or f"{pred} stopped holding"
