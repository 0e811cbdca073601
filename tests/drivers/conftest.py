"""Fixtures that build drivers and always clean up every process they may have left."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harmony.actors.drivers import Driver, TetherSpec, make_driver
from harmony.actors.drivers.hooks_tether import end_watchers
from harmony.config import DriverConfig

from .helpers import Recorder, Runbook


class Built:
    """What the ``build`` fixture hands out: a driver and its event recorder."""

    def __init__(self, driver: Driver[Any], events: Recorder) -> None:
        self.driver = driver
        self.events = events


@pytest.fixture
def reap() -> Iterator[Callable[[int], int]]:
    """Register pids whose process groups / processes must be gone after the test."""
    pids: list[int] = []
    yield lambda pid: (pids.append(pid), pid)[1]
    for pid in pids:
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(OSError):
                kill(pid, signal.SIGKILL)


@pytest.fixture
def build(tmp_path: Path) -> Iterator[Callable[..., Built]]:
    """``build(config, **kwargs)`` -> driver + recorder; closed (processes killed) at teardown."""
    made: list[Built] = []

    def _build(config: DriverConfig, **kwargs: Any) -> Built:
        events = Recorder()
        kwargs.setdefault("workload", "w1")
        kwargs.setdefault("site", "site-a")
        kwargs.setdefault("log_dir", tmp_path / "logs")
        kwargs.setdefault("stop_grace", 0.5)
        driver = make_driver(config, on_event=events, **kwargs)
        built = Built(driver, events)
        made.append(built)
        return built

    yield _build
    for built in made:
        pid = getattr(built.driver, "pid", None)
        built.driver.close()
        if pid is not None:  # belt and braces: never leave a group behind
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def runbook(tmp_path: Path) -> Iterator[Runbook]:
    """A runbook whose workload is a real background process; killed at teardown."""
    rb = Runbook(tmp_path / "runbook")
    yield rb
    rb.kill()


@pytest.fixture
def tether_spec(tmp_path: Path) -> Iterator[TetherSpec]:
    """A TetherSpec in tmp_path; every hooks watcher of it is killed at teardown."""
    spec = TetherSpec(tmp_path / "tether" / "w1", tmp_path / "journal.jsonl", "inc-1")
    spec.deadline_dir.mkdir(parents=True)
    yield spec
    end_watchers(spec.deadline_dir)
