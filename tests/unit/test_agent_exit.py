"""`harmony agent` ends even when a thread outlives the actor tree's stop."""

from __future__ import annotations

import subprocess
import sys
import time

STUCK = """
import sys, time
import pykka
from harmony.cli import _leave

class Stuck(pykka.ThreadingActor):
    def on_receive(self, message):
        time.sleep(60)  # never gets to the stop message queued behind this one

class Busy(pykka.ThreadingActor):
    pass

Busy.start()  # a leftover actor: stopped by _leave
Stuck.start().tell("block")
sys.exit(_leave(3, wait=0.5))
"""

CLEAN = """
import sys
import pykka
from harmony.cli import _leave

class Busy(pykka.ThreadingActor):
    pass

Busy.start()
sys.exit(_leave(0, wait=5))
"""


def run(code: str) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return proc, time.monotonic() - t0


def test_a_stuck_thread_does_not_keep_the_agent_process_alive() -> None:
    proc, took = run(STUCK)
    assert proc.returncode == 3, proc.stderr
    assert took < 30, "the process waited for the stuck thread"
    assert "1 actors still running" in proc.stderr and "Stuck" in proc.stderr


def test_leftover_actors_are_stopped_and_the_exit_is_normal() -> None:
    proc, _ = run(CLEAN)
    assert proc.returncode == 0, proc.stderr
    assert "exiting anyway" not in proc.stderr
