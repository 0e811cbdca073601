"""HooksDriver: the user's own start/stop/fence/probe scripts, made event-driven.

This is how existing manual failover runbooks join the mesh unchanged: each action is a shell
command (``/bin/sh -c``) that gets the same HARMONY_* environment as a process workload, plus
HARMONY_HOOK (which action) and HARMONY_REASON (why, for stop and fence). Hooks should be
idempotent: ``fence`` runs its hook even when the driver believes nothing runs, because after an
agent restart the driver cannot know what an earlier incarnation started.

Start, stop and fence hooks write straight into the workload's log file and are waited for by
*process exit*, not end of output: a start hook that backgrounds a daemon must not hang us.
A hook that exceeds ``config.timeout`` has its whole process group killed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import tempfile
import threading
import time
from typing import NamedTuple

from harmony.config import HooksDriverConfig

from .base import Driver, DriverState, describe_exit, log_size, tail_lines, terminate_group

log = logging.getLogger(__name__)

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
    """Why the hook could not be run at all (e.g. /bin/sh missing)."""

    @property
    def ok(self) -> bool:
        return self.code == 0 and not self.timed_out and not self.cancelled

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


class HooksDriver(Driver[HooksDriverConfig]):
    """Runs the configured hooks; a background prober reports health transitions.

    ``start`` returns at once: the start hook runs on a thread and its outcome arrives as a
    ``running`` or ``failed`` event. A start hook may legitimately take many seconds, and the
    actor thread that called ``start`` must stay free to ``fence`` meanwhile: ``stop`` and
    ``fence`` cancel a start hook still in progress (killing its process group) before they
    run their own hook. ``stop`` and ``fence`` block until their hook is done.
    """

    _starter: threading.Thread | None = None
    _start_cancel: threading.Event | None = None
    _prober: threading.Thread | None = None
    _prober_stop: threading.Event | None = None
    _gen: int = 0
    """Bumped whenever the prober is replaced: a late result of an old prober is dropped."""

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, token: int | None) -> None:
        with self._op:
            with self._lock:
                if self._closed:
                    log.warning("%s: start(%s) ignored: driver closed", self.workload, token)
                    return
                if self._state in (DriverState.RUNNING, DriverState.STARTING):
                    log.info(
                        "%s: start(token=%s) ignored: already %s (token %s)",
                        self.workload,
                        token,
                        self._state,
                        self._token,
                    )
                    return
                self._token = token
            self._stop_prober()
            with self._lock:
                self._set(DriverState.STARTING, "running start hook")
                cancel = threading.Event()
                self._start_cancel = cancel
                self._starter = threading.Thread(
                    target=self._run_start,
                    args=(cancel,),
                    name=f"driver-start-{self.workload}",
                    daemon=True,
                )
                self._starter.start()

    def stop(self, reason: str) -> None:
        with self._op:
            self._cancel_start()
            if self.state in (DriverState.STOPPED, DriverState.FENCED):
                return  # nothing to do; stop after fence stays fenced
            self._stop_prober()
            self._set(DriverState.STOPPING, reason)
            res = self._run_hook("stop", self.config.stop, reason=reason)
            if res.ok:
                self._set(DriverState.STOPPED, f"{reason}: stop hook ok in {res.took:.2f} s")
            else:
                self._set(DriverState.UNKNOWN, "stop hook " + res.summary(self.config.timeout))

    def fence(self, reason: str) -> None:
        with self._op:
            self._cancel_start()
            if self.state is DriverState.FENCED:
                return
            self._stop_prober()
            self._set(DriverState.STOPPING, f"fencing: {reason}")
            kind = "fence" if self.config.fence else "stop"
            res = self._run_hook(kind, self.config.fence or self.config.stop, reason=reason)
            if res.ok:
                self._set(DriverState.FENCED, f"{reason}: {kind} hook ok in {res.took:.2f} s")
            else:
                # The workload may still be active: the actor layer must escalate.
                detail = f"fence failed ({kind} hook {res.summary(self.config.timeout)})"
                self._set(DriverState.UNKNOWN, detail)

    def probe(self) -> bool:
        if not self.config.probe:
            return self.state is DriverState.RUNNING
        return self._run_hook("probe", self.config.probe, capture=True).ok

    def close(self) -> None:
        # The workload is the user's, managed by their hooks: closing only stops our threads
        # (a start hook still running is cancelled: nobody would act on its outcome).
        with self._lock:
            self._closed = True
        self._cancel_start()
        self._stop_prober()

    # -- start --------------------------------------------------------------------------------

    def _run_start(self, cancel: threading.Event) -> None:
        """Starter thread: run the start hook and report its outcome unless cancelled."""
        res = self._run_hook("start", self.config.start, cancel=cancel)
        with self._lock:
            if cancel.is_set():
                return  # stop()/fence()/close() took over and report what happens next
            if not res.ok:
                self._set(DriverState.UNKNOWN, "start hook " + res.summary(self.config.timeout))
                return
            self._set(DriverState.RUNNING, f"start hook ok in {res.took:.2f} s")
            if self.config.probe:
                self._start_prober()

    def _cancel_start(self) -> None:
        """Cancel a start hook in progress (its group is killed) and wait for its thread."""
        with self._lock:
            thread, cancel = self._starter, self._start_cancel
            self._starter = self._start_cancel = None
            if cancel is not None:
                cancel.set()  # under the lock: the starter cannot report after this
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    # -- prober -------------------------------------------------------------------------------

    def _start_prober(self) -> None:
        with self._lock:
            self._gen += 1
            stop = threading.Event()
            self._prober_stop = stop
            self._prober = threading.Thread(
                target=self._probe_loop,
                args=(stop, self._gen),
                name=f"driver-probe-{self.workload}",
                daemon=True,
            )
            self._prober.start()

    def _stop_prober(self) -> None:
        """Stop the prober and wait for it, so no probe event can follow a later state."""
        with self._lock:
            self._gen += 1
            thread, stop = self._prober, self._prober_stop
            self._prober = self._prober_stop = None
        if stop is not None:
            stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _probe_loop(self, stop: threading.Event, gen: int) -> None:
        """Report only transitions: failed after a success, running again on recovery."""
        succeeded = failing = False
        while not stop.wait(self.config.probe_interval):
            res = self._run_hook("probe", self.config.probe, cancel=stop, capture=True)
            if stop.is_set():
                return
            with self._lock:
                if gen != self._gen:
                    return
                if res.ok:
                    if failing:
                        self._mark("probe recovered")
                        self._set(DriverState.RUNNING, "probe recovered")
                    succeeded, failing = True, False
                elif succeeded and not failing:
                    failing = True
                    self._mark(f"probe failed: {res.describe(self.config.timeout)}")
                    self._append(res.output)
                    self._set(
                        DriverState.UNKNOWN, "probe failed: " + res.summary(self.config.timeout)
                    )
                elif not succeeded:
                    log.debug("%s: probe not healthy yet: %s", self.workload, res.output[-1:])

    # -- running hooks ------------------------------------------------------------------------

    def _run_hook(
        self,
        kind: str,
        command: str,
        *,
        reason: str = "",
        cancel: threading.Event | None = None,
        capture: bool = False,
    ) -> HookResult:
        """Run one hook in its own process group; kill the group on timeout or cancel.

        ``capture`` sends output to a private temporary file instead of the log: probes run
        every few seconds and would drown the log; their output is logged only on failure.
        """
        timeout = self.config.timeout
        env = self._env(self.config.env, HARMONY_HOOK=kind, HARMONY_REASON=reason)
        offset = 0
        with contextlib.ExitStack() as stack:
            if capture:
                out = stack.enter_context(tempfile.TemporaryFile())
                fd = out.fileno()
            else:
                self._mark(f"hook {kind} token={self._token}: {command}")
                offset = log_size(self.log_path)
                fd = self._open_log()
                stack.callback(os.close, fd)
            t0 = time.monotonic()
            try:
                proc = subprocess.Popen(
                    ["/bin/sh", "-c", command],
                    stdin=subprocess.DEVNULL,
                    stdout=fd,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            except OSError as e:
                self._mark(f"hook {kind} could not run: {e}")
                return HookResult(None, False, False, [], 0.0, error=str(e))
            timed_out, cancelled = self._wait_hook(proc, t0 + timeout, cancel)
            if timed_out or cancelled:

                def leader_done(t: float) -> bool:
                    try:
                        proc.wait(t)
                    except subprocess.TimeoutExpired:
                        return False
                    return True

                terminate_group(proc.pid, leader_done, self.stop_grace)
            took = time.monotonic() - t0
            if capture:
                out.seek(0)
                output = out.read().decode("utf-8", errors="replace").splitlines()
            else:
                output = tail_lines(self.log_path, 20, start=offset)
        code = None if timed_out or cancelled else proc.returncode
        res = HookResult(code, timed_out, cancelled, output, took)
        if not capture:
            self._mark(f"hook {kind} {res.describe(timeout)} in {took:.2f} s")
        return res

    @staticmethod
    def _wait_hook(
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

    def _append(self, lines: list[str]) -> None:
        if not lines:
            return
        try:
            with open(self.log_path, "a", buffering=1, encoding="utf-8") as f:
                f.writelines(line + "\n" for line in lines)
        except OSError:
            log.exception("%s: cannot write %s", self.workload, self.log_path)
