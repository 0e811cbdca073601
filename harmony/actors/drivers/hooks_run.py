"""Running one hook: ``/bin/sh -c`` in its own process group, killed with it on timeout.

Shared by the hooks driver (in the agent) and the hooks watcher (outside it), so that a fence
hook run by either is given the same time and is killed the same way.
"""

from __future__ import annotations

import subprocess
import threading
import time
from typing import NamedTuple

from .base import describe_exit, terminate_group

DETAIL_LINES = 5
"""How many output lines of a failed hook go into the event's detail."""
CANCEL_POLL = 0.05


class HookResult(NamedTuple):
    """The outcome of one hook run."""

    code: int | None
    """Exit status (negative: killed by that signal); None when it timed out or never ran."""
    timed_out: bool
    cancelled: bool
    output: list[str]
    took: float
    error: str = ""
    """Why the hook could not be run at all (e.g. /bin/sh missing, a NUL in the env)."""

    @property
    def ok(self) -> bool:
        return self.code == 0 and not self.timed_out and not self.cancelled

    @property
    def down(self) -> bool:
        """As a probe: it said "down" (a non-zero exit status, not a timeout or a signal)."""
        return self.code is not None and self.code > 0

    def describe(self, timeout: float) -> str:
        if self.error:
            return f"could not run: {self.error}"
        if self.timed_out:
            return f"timed out after {timeout:g} s (process group killed)"
        if self.cancelled:
            return "cancelled"
        assert self.code is not None
        return describe_exit(self.code)

    def summary(self, timeout: float) -> str:
        """Outcome plus the last output lines: what an operator needs in one event detail."""
        text = self.describe(timeout)
        tail = [line for line in self.output if line.strip()][-DETAIL_LINES:]
        return f"{text}: {' | '.join(tail)}" if tail else text


def run_shell(
    command: str,
    *,
    env: dict[str, str],
    out_fd: int | None,
    timeout: float,
    grace: float,
    cancel: threading.Event | None = None,
    own_session: bool = True,
) -> HookResult:
    """Run `command`; on timeout or `cancel`, SIGTERM its group and SIGKILL it after `grace`.

    The hook gets its own session (``own_session``), or a new process group inside ours (the
    watcher: whoever ends the watcher's session ends an attempt in flight too). Output goes
    to `out_fd` (None: ours); the result's ``output`` is left empty for the caller to fill.
    Never raises for a hook that cannot run: that is a result with ``error``.
    """
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=out_fd,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=own_session,
            process_group=None if own_session else 0,
        )
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        return HookResult(None, False, False, [], time.monotonic() - t0, error=str(e))
    timed_out, cancelled = _wait(proc, t0 + timeout, cancel)
    if timed_out or cancelled:

        def leader_done(t: float) -> bool:
            try:
                proc.wait(t)
            except subprocess.TimeoutExpired:
                return False
            return True

        terminate_group(proc.pid, leader_done, grace)
    code = None if timed_out or cancelled else proc.returncode
    return HookResult(code, timed_out, cancelled, [], time.monotonic() - t0)


def _wait(
    proc: subprocess.Popen[bytes], deadline: float, cancel: threading.Event | None
) -> tuple[bool, bool]:
    """Wait for the hook's exit. Returns (timed_out, cancelled)."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return True, False
        if cancel is not None and cancel.is_set():
            return False, True
        step = remaining if cancel is None else min(remaining, CANCEL_POLL)
        try:
            proc.wait(step)
            return False, False
        except subprocess.TimeoutExpired:
            continue
