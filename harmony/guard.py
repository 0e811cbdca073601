"""What a workload uses to stay safe on its own: its fence deadline and a fencing-token guard.

This module is for workload authors; it imports nothing from the rest of `harmony`, so a
workload can vendor it. The agent hands an absolute-consistency copy two things:

* ``HARMONY_FENCING_TOKEN``: the lease revision it runs under. Tokens only grow.
* ``HARMONY_FENCE_DEADLINE_FILE``: a file holding the copy's fence deadline, a
  ``CLOCK_MONOTONIC`` time (the clock every process of the machine shares), rewritten after
  every confirmed lease renewal; ``released`` once the agent confirmed the copy stopped.
  A copy that finds the deadline passed (or the file missing, unreadable or released) must
  act no more: `deadline_passed` tells it.

The deadline covers a frozen agent; it cannot cover a frozen *machine* (a paused VM resumes
with a stale copy for a moment). Only a resource that rejects stale tokens closes that gap:
see `TokenGuard`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

TOKEN_ENV = "HARMONY_FENCING_TOKEN"
DEADLINE_ENV = "HARMONY_FENCE_DEADLINE_FILE"
RELEASED = "released"
"""The content of a deadline file whose copy the agent confirmed stopped."""


def write_deadline(path: Path, deadline: float | str) -> None:
    """Atomically replace the content of `path` (a reader never sees a torn number)."""
    text = deadline if isinstance(deadline, str) else f"{deadline:.6f}"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


def read_deadline(path: Path) -> float | None:
    """The monotonic deadline in `path`; None when missing, unreadable or released."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == RELEASED:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def deadline_passed(path: Path | str | None = None, now: float | None = None) -> bool:
    """True when this copy must not act any more (see the module docstring).

    `path` defaults to ``$HARMONY_FENCE_DEADLINE_FILE``; without one (a workload that runs
    without a lease) nothing ever passes.
    """
    if path is None:
        env = os.environ.get(DEADLINE_ENV)
        if not env:
            return False
        path = env
    deadline = read_deadline(Path(path))
    return deadline is None or (time.monotonic() if now is None else now) >= deadline
