"""HooksDriver: the user's own start/stop/fence/probe scripts, made event-driven.

This is how existing manual failover runbooks join the mesh unchanged: each action is a shell
command (``/bin/sh -c``) that gets the same HARMONY_* environment as a process workload, plus
HARMONY_HOOK (``start``, ``stop``, ``fence`` -- also when the stop hook stands in for a missing
fence hook -- or ``probe``) and HARMONY_REASON (why, for stop and fence; control characters
escaped). Hooks must be idempotent, and stop and fence hooks must return only once the copy is
down: ``fence`` runs its hook whatever the driver believes, because after an agent restart the
driver cannot know what an earlier incarnation started.

Outcomes are facts. `STOPPED` and `FENCED` mean the hook exited 0 *and*, when a probe is
configured, one probe run afterwards reported the copy down (exit status > 0). Everything
else -- a failed, timed-out or unrunnable hook, a probe that still answers, a start hook that
failed halfway -- is `UNKNOWN`: the copy may still run, and the caller fences.

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
from typing import Any

from harmony.config import HooksDriverConfig
from harmony.guard import read_deadline
from harmony.private_files import open_private_append

from .base import Driver, DriverState, log_size, tail_lines
from .containment import CONTAINMENT_ENV
from .hooks_run import HookResult, run_shell
from .hooks_tether import WATCH_ENV, clean_text, end_watchers, watch_argv, watch_marker

log = logging.getLogger(__name__)

S = DriverState


class HooksDriver(Driver[HooksDriverConfig]):
    """Runs the configured hooks; a background prober reports health transitions.

    Events, in order per call (see the module docstring for what the outcomes mean):

    * ``start``: `STARTING`, then `RUNNING` (start hook exited 0) or `UNKNOWN` (it failed,
      timed out or could not run; or, tethered, it was refused: no valid fence deadline, or
      no watcher). Nothing if stop/fence/close cancelled it: they report. Ignored (no event)
      when closed or already `STARTING`/`RUNNING`.
    * prober (only after `RUNNING`, only with a probe): `UNKNOWN` "probe failed: ..." after
      a success; it keeps probing and reports `RUNNING` "probe recovered".
    * ``stop``: `STOPPING`, then exactly one `STOPPED` or `UNKNOWN` -- on every call.
    * ``fence``: `STOPPING`, then exactly one `FENCED` or `UNKNOWN` -- on every call.

    ``start`` returns at once: the start hook runs on a thread, and the actor thread that
    called ``start`` must stay free to ``fence`` meanwhile. ``stop`` and ``fence`` cancel a
    start hook in progress (killing its process group), then block until their outcome.

    With a `TetherSpec`, every tokened start first ends the workload's older watchers, then
    starts a new one (`hooks_watch`) before the start hook runs; a confirmed `STOPPED` or
    `FENCED` ends the watchers at once (their copy is down).
    """

    _starter: threading.Thread | None = None
    _start_cancel: threading.Event | None = None
    _prober: threading.Thread | None = None
    _prober_stop: threading.Event | None = None
    _gen: int = 0
    """Bumped whenever the prober is replaced: a late result of an old prober is dropped."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watchers: list[subprocess.Popen[bytes]] = []
        """Watchers this instance started: kept only to reap them once they exit."""

    def _active(self) -> str:
        return str(self._state) if self._state in (S.RUNNING, S.STARTING) else ""

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, token: int | None) -> None:
        with self._op:
            with self._lock:
                if self._start_refused(token):
                    return
                self._token = token
            self._stop_prober()
            with self._lock:
                self._set(S.STARTING, "running start hook")
                cancel = threading.Event()
                self._start_cancel = cancel
                self._starter = threading.Thread(
                    target=self._run_start,
                    args=(cancel, token),
                    name=f"driver-start-{self.workload}",
                    daemon=True,
                )
                self._starter.start()

    def stop(self, reason: str) -> None:
        reason = clean_text(reason)
        with self._op:
            self._finish("stop", self.config.stop, reason, S.STOPPED, reason)

    def fence(self, reason: str) -> None:
        reason = clean_text(reason)
        with self._op:
            command = self.config.fence or self.config.stop
            self._finish("fence", command, reason, S.FENCED, f"fencing: {reason}")

    def probe(self) -> bool:
        if not self.config.probe:
            return self.state is S.RUNNING
        return self._run_hook("probe", self.config.probe, capture=True).ok

    def close(self) -> None:
        """Stop the driver's threads (a start hook in flight is cancelled). Idempotent.

        The copy is the user's, and so are its hooks: close() neither stops it nor ends its
        watchers. A watcher still runs only for a copy not confirmed stopped (a confirmed
        stop or fence ends it), and such a copy must stay watched after the driver is gone:

        * graceful agent shutdown: the agent stops the copy first; confirmed, the watcher is
          already gone; unconfirmed, the watcher stays and fences at once when the agent
          process exits (its parent changed);
        * crash: close() never runs; the watcher sees its parent die and fences at once;
        * the run actor restarts inside a live agent: the old watcher keeps to its deadline,
          and the new driver's next tokened start ends it before its own start hook runs.
        """
        with self._lock:
            self._closed = True
        self._cancel_start()
        self._stop_prober()
        self._reap_watchers()

    # -- start --------------------------------------------------------------------------------

    def _run_start(self, cancel: threading.Event, token: int | None) -> None:
        """Starter thread: arm the tether, run the start hook, report unless cancelled."""
        try:
            refused = self._arm_tether(token)
            res = None
            if refused is None and not cancel.is_set():
                res = self._run_hook("start", self.config.start, cancel=cancel)
        except Exception as e:  # no outcome would leave the caller waiting in STARTING
            log.exception("%s: start failed inside the driver", self.workload)
            refused, res = f"failed inside the driver: {e!r}", None
        with self._lock:
            if cancel.is_set():
                return  # stop()/fence()/close() took over and report what happens next
            if refused is not None or res is None:
                self._set(S.UNKNOWN, f"start refused: {refused}")
            elif not res.ok:
                self._set(S.UNKNOWN, "start hook " + res.summary(self.config.timeout))
            else:
                self._set(S.RUNNING, f"start hook ok in {res.took:.2f} s")
                if self.config.probe:
                    self._start_prober()

    def _arm_tether(self, token: int | None) -> str | None:
        """Tethered and tokened: end older watchers, check the deadline, start the watcher.

        Returns why the copy must not start (None: go). Older watchers go first so that none
        of them can fence this copy (hooks act on the workload, not on one token's copy); the
        deadline is checked first so that the new watcher does not fence at once while the
        start hook runs.
        """
        if self.tether is None or token is None:
            return None
        survivors = end_watchers(self.tether.deadline_dir)
        self._reap_watchers()
        if survivors:
            return f"older hooks watchers survived SIGKILL: {survivors}"
        path = self.tether.deadline_file(token)
        deadline = read_deadline(path)
        if deadline is None:
            return f"no fence deadline in {path} (missing, unreadable or released)"
        if deadline <= time.monotonic():
            return f"the fence deadline in {path} has passed"
        argv = watch_argv(
            self.config.fence or self.config.stop,
            path,
            timeout=self.config.timeout,
            grace=self.stop_grace,
            journal=self.tether.journal,
            site=self.site,
            workload=self.workload,
            incarnation=self.tether.incarnation,
            token=token,
            containment=self.containment,
            agent_pid=os.getpid(),
        )
        env = self._env(self.config.env, HARMONY_HOOK="fence", HARMONY_REASON="tether")
        env.pop(CONTAINMENT_ENV, None)  # see hooks_tether: the watcher is not the copy
        env[WATCH_ENV] = watch_marker(self.tether.deadline_dir)
        with contextlib.ExitStack() as stack:
            fd = self._log_fd(stack)
            try:
                watcher = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=fd,
                    stderr=fd,
                    env=env,
                    start_new_session=True,  # outside the agent's group; no parent-death signal
                )
            except (OSError, ValueError, subprocess.SubprocessError) as e:
                return f"cannot start the hooks watcher: {e}"
        with self._lock:
            self._watchers.append(watcher)
        self._mark(f"hooks watcher pid {watcher.pid} fences token {token} at {path}")
        return None

    def _cancel_start(self) -> None:
        """Cancel a start hook in progress (its group is killed) and wait for its thread."""
        with self._lock:
            thread, cancel = self._starter, self._start_cancel
            self._starter = self._start_cancel = None
            if cancel is not None:
                cancel.set()  # under the lock: the starter cannot report after this
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    # -- stop and fence -----------------------------------------------------------------------

    def _finish(self, kind: str, command: str, reason: str, done: S, doing: str) -> None:
        """Run a stop or fence: `STOPPING`, then exactly one `done` or `UNKNOWN`."""
        state, detail = S.UNKNOWN, f"{kind}: no outcome"
        try:
            self._cancel_start()
            self._stop_prober()
            self._set(S.STOPPING, doing)
            state, detail = self._confirm(kind, command, reason, done)
            if state is done and self.tether is not None:
                left = end_watchers(self.tether.deadline_dir)  # their copy is confirmed down
                self._reap_watchers()
                if left:
                    log.warning("%s: hooks watchers survived SIGKILL: %s", self.workload, left)
        except Exception as e:
            log.exception("%s: %s failed inside the driver", self.workload, kind)
            state, detail = S.UNKNOWN, f"{kind} failed inside the driver: {e!r}"
        finally:
            self._set(state, detail)

    def _confirm(self, kind: str, command: str, reason: str, done: S) -> tuple[S, str]:
        """Run the hook, then (with a probe) one probe: `done` only if both say down."""
        timeout = self.config.timeout
        hook = f"{kind} hook" if command == getattr(self.config, kind) else "stop hook (fencing)"
        res = self._run_hook(kind, command, reason=reason)
        if not res.ok:
            return S.UNKNOWN, f"{hook} {res.summary(timeout)}"
        ok = f"{reason}: {hook} ok in {res.took:.2f} s"
        if not self.config.probe:
            return done, ok
        probe = self._run_hook("probe", self.config.probe, capture=True)
        if probe.down:
            return done, f"{ok}; the probe reports it down"
        if probe.ok:
            return S.UNKNOWN, f"{hook} ok but the probe still reports it up"
        return S.UNKNOWN, f"{hook} ok but the probe {probe.summary(timeout)}"

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
                        self._set(S.RUNNING, "probe recovered")
                    succeeded, failing = True, False
                elif succeeded and not failing:
                    failing = True
                    self._mark(f"probe failed: {res.describe(self.config.timeout)}")
                    self._append(res.output)
                    self._set(S.UNKNOWN, "probe failed: " + res.summary(self.config.timeout))
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
        offset = 0
        with contextlib.ExitStack() as stack:
            try:
                reason = clean_text(reason)
                env = self._env(self.config.env, HARMONY_HOOK=kind, HARMONY_REASON=reason)
                if capture:
                    out = stack.enter_context(tempfile.TemporaryFile())
                    fd = out.fileno()
                else:
                    self._mark(f"hook {kind} token={self._token}: {command}")
                    offset = log_size(self.log_path)
                    fd = self._log_fd(stack)
            except (OSError, ValueError) as e:  # no temporary file, a NUL in the config's env
                res = HookResult(None, False, False, [], 0.0, error=str(e))
            else:
                res = run_shell(
                    command,
                    env=env,
                    out_fd=fd,
                    timeout=timeout,
                    grace=self.stop_grace,
                    cancel=cancel,
                )
                if capture:
                    out.seek(0)
                    output = out.read().decode("utf-8", errors="replace").splitlines()
                else:
                    output = tail_lines(self.log_path, 20, start=offset)
                res = res._replace(output=output)
        if not capture:
            self._mark(f"hook {kind} {clean_text(res.describe(timeout))} in {res.took:.2f} s")
        return res

    def _log_fd(self, stack: contextlib.ExitStack) -> int:
        """The log for a child's output, or /dev/null when the log cannot be opened (a full
        disk must not keep a stop or fence from running)."""
        try:
            fd = self._open_log()
        except OSError as e:
            log.warning("%s: cannot open %s: %s", self.workload, self.log_path, e)
            fd = os.open(os.devnull, os.O_WRONLY)
        stack.callback(os.close, fd)
        return fd

    def _reap_watchers(self) -> None:
        """Collect the exit status of watchers that left (they are our children)."""
        with self._lock:
            self._watchers = [w for w in self._watchers if w.poll() is None]

    def _append(self, lines: list[str]) -> None:
        if not lines:
            return
        try:
            with os.fdopen(open_private_append(self.log_path), "a", encoding="utf-8") as f:
                f.writelines(line + "\n" for line in lines)
        except OSError:
            log.exception("%s: cannot write %s", self.workload, self.log_path)
