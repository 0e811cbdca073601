"""Fixtures that build drivers and always clean up every process they may have left."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.drivers import AGENT_SCRIPT, Agent, Built, Recorder, Runbook, kill_containment
from support.processes import read_pid

from harmony.actors.drivers import TetherSpec, make_driver
from harmony.actors.drivers.containment import containment_id
from harmony.actors.drivers.hooks_tether import end_watchers
from harmony.config import DriverConfig


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
        # A containment of this test only: a start cleans its containment first, so a shared
        # default id would kill the processes of a test running alongside.
        kwargs.setdefault(
            "containment", containment_id(tmp_path, kwargs["site"], kwargs["workload"])
        )
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
        kill_containment(built.driver.containment)


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


@pytest.fixture
def boxes() -> Iterator[Callable[[str], str]]:
    """Register containment ids whose processes must be gone after the test."""
    ids: list[str] = []
    yield lambda cid: (ids.append(cid), cid)[1]
    for cid in ids:
        kill_containment(cid)


@pytest.fixture
def agent(tmp_path: Path, boxes: Callable[[str], str]) -> Iterator[Callable[..., Agent]]:
    """`agent(cid, command, token=None, grace=0.5, cgroup=True)`: an agent process running
    one copy (`cgroup=False`: as on a host without cgroup v2).
    At teardown the agents are killed, then (`boxes`) every process of their containments."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        cid: str,
        command: list[str],
        token: int | None = None,
        grace: float = 0.5,
        cgroup: bool = True,
    ) -> Agent:
        n = len(procs)
        ready, out = tmp_path / f"agent-{n}.ready", tmp_path / f"agent-{n}.out"
        journal = tmp_path / "journal.jsonl"
        cfg = {
            "command": command,
            "token": token,
            "grace": grace,
            "containment": boxes(cid),
            "deadline_dir": str(tmp_path / "tether" / "w1"),
            "journal": str(journal),
            "log_dir": str(tmp_path / "agent-logs"),
            "ready": str(ready),
            "cgroup": cgroup,
        }
        with open(out, "wb") as f:
            proc = subprocess.Popen(
                [sys.executable, "-c", AGENT_SCRIPT, json.dumps(cfg)],
                stdout=f,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        procs.append(proc)
        return Agent(proc, read_pid(ready, timeout=30), out, journal)

    yield start
    for proc in procs:
        with contextlib.suppress(OSError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
