"""ProcessDriver: the workload is a real command, run in its own process group.

The process group is the unit of the workload: stop and fence signal the whole group, so
children the workload spawned do not outlive it (a fenced site must not keep a forked worker
writing). Output goes straight into ``<log_dir>/<workload>.log``; a waiter thread reaps the
process and applies the restart policy to exits nobody asked for.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import threading
import time

from harmony.config import ProcessDriverConfig

from .base import (
    Driver,
    DriverState,
    describe_exit,
    group_alive,
    signal_group,
    terminate_group,
)
from .spawn import resolve, spawn_tied
from .tether import TETHER_FENCED, tether_argv

log = logging.getLogger(__name__)

MAX_BACKOFF = 10.0
"""Restart delays double after each quick failure, up to this many seconds."""
HEALTHY_RUN = 10.0
"""A process that ran this long resets the backoff: its next failure is a fresh one."""


class ProcessDriver(Driver[ProcessDriverConfig]):
    """Runs ``config.command``; restarts per ``config.restart``; stops by group signals."""

    # Per-instance state, declared with immutable class defaults so the constructor stays the
    # base one (assignment shadows them per instance).
    _proc: subprocess.Popen[bytes] | None = None
    _waiter: threading.Thread | None = None
    _timer: threading.Timer | None = None
    _started_at: float = 0.0
    _halting: bool = False
    """The current exit was asked for by stop/fence: no restart, no "exited" event."""
    _failures: int = 0
    """Quick failures in a row, for the restart backoff."""
    _gen: int = 0
    """Bumped by every start/stop/fence/close: a stale restart timer sees it and gives up."""

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._proc.pid if self._proc else None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, token: int | None) -> None:
        with self._op:
            with self._lock:
                if self._closed:
                    log.warning("%s: start(%s) ignored: driver closed", self.workload, token)
                    return
                if self._proc is not None:
                    log.info(
                        "%s: start(token=%s) ignored: already running (pid %s, token %s)",
                        self.workload,
                        token,
                        self._proc.pid,
                        self._token,
                    )
                    return
                self._gen += 1  # a pending restart is replaced by this explicit start
                self._cancel_timer()
                self._token = token
                self._failures = 0
            self._spawn()

    def stop(self, reason: str) -> None:
        self._halt(reason, DriverState.STOPPED)

    def fence(self, reason: str) -> None:
        self._halt(reason, DriverState.FENCED)

    def probe(self) -> bool:
        with self._lock:
            return self._proc is not None and self._proc.returncode is None

    def close(self) -> None:
        with self._op:
            if self._proc is not None:
                self._halt("driver closed", DriverState.STOPPED)
            with self._lock:
                self._closed = True
                self._gen += 1
                self._cancel_timer()

    # -- internals ----------------------------------------------------------------------------

    def _spawn(self) -> None:
        """Start one instance. Caller holds ``_op``."""
        cfg = self.config
        self._set(DriverState.STARTING, f"starting {shlex.join(cfg.command)}")
        self._mark(f"start token={self._token}: {shlex.join(cfg.command)}")
        argv = cfg.command
        deadline_file = self.deadline_file()
        tethered = self.tether is not None and deadline_file is not None
        fd = self._open_log()
        try:
            if self.tether is not None and deadline_file is not None:
                resolve(cfg.command[0], cfg.cwd or None, self._env(cfg.env))  # the clear error
                argv = tether_argv(
                    cfg.command,
                    deadline_file,
                    self.stop_grace,
                    journal=self.tether.journal,
                    site=self.site,
                    workload=self.workload,
                    incarnation=self.tether.incarnation,
                    token=self._token,
                )
            proc = spawn_tied(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=subprocess.STDOUT,
                cwd=cfg.cwd or None,
                env=self._env(cfg.env),
                start_new_session=True,  # own group: we can kill it and all its children
            )
        except OSError as e:
            detail = self._spawn_error(e)
            self._mark(detail)
            self._set(DriverState.UNKNOWN, detail)
            return
        finally:
            os.close(fd)
        with self._lock:
            self._proc = proc
            self._halting = False
            self._started_at = self._monotonic()
            how = f"pid {proc.pid}" + (" (tethered to the fence deadline)" if tethered else "")
            self._set(DriverState.RUNNING, how, pid=proc.pid)
            # Started under the lock, so its "exited" can never overtake our "running".
            self._waiter = threading.Thread(
                target=self._wait, args=(proc,), name=f"driver-wait-{self.workload}", daemon=True
            )
            self._waiter.start()

    def _spawn_error(self, e: OSError) -> str:
        cmd = self.config.command
        what = shlex.join(cmd)
        if isinstance(e, FileNotFoundError) and self.config.cwd and e.filename == self.config.cwd:
            return f"cannot start {what}: working directory not found: {self.config.cwd}"
        if isinstance(e, FileNotFoundError):
            return f"cannot start {what}: command not found: {cmd[0]}"
        if isinstance(e, PermissionError):
            return f"cannot start {what}: permission denied: {e.filename or cmd[0]}"
        return f"cannot start {what}: {e.strerror or e}"

    def _wait(self, proc: subprocess.Popen[bytes]) -> None:
        """Waiter thread: reap the process; report and maybe restart if nobody asked for it."""
        code = proc.wait()
        with self._lock:
            if self._proc is not proc or self._halting:
                return  # stop()/fence() is handling this exit and reports its outcome
            self._proc = None
            if group_alive(proc.pid):
                # Orphans of a dead workload: a restart must not race its predecessor's children.
                signal_group(proc.pid, signal.SIGKILL)
            if self.tether is not None and code == TETHER_FENCED:
                # The tether fenced it (the fence deadline passed with no renewal): never a
                # crash to restart; only a new lease may run it again.
                detail = "fenced by its tether: the fence deadline passed with no renewal"
                self._mark(f"pid {proc.pid} {detail}")
                self._set(DriverState.FENCED, detail, exit_code=code, pid=proc.pid)
                return
            ran = self._monotonic() - self._started_at
            if ran >= HEALTHY_RUN:
                self._failures = 0
            policy = self.config.restart
            restart = not self._closed and (
                policy == "always" or (policy == "on-failure" and code != 0)
            )
            detail = describe_exit(code)
            if restart:
                delay = min(MAX_BACKOFF, self.config.restart_delay * 2**self._failures)
                self._failures += 1
                detail += f"; restarting in {delay:g} s ({policy})"
                self._timer = threading.Timer(delay, self._restart, args=(self._gen,))
                self._timer.daemon = True
                self._timer.start()
            self._mark(f"pid {proc.pid} {detail}")
            self._set(DriverState.EXITED, detail, exit_code=code, pid=proc.pid, restarting=restart)

    def _restart(self, gen: int) -> None:
        with self._op:
            # Every writer of _gen holds _op, so the check stays true while we spawn.
            with self._lock:
                if self._closed or gen != self._gen or self._proc is not None:
                    return  # stopped, fenced, closed or explicitly restarted meanwhile
                self._timer = None
            self._spawn()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _halt(self, reason: str, final: DriverState) -> None:
        """stop() and fence(): same mechanics, different final state."""
        with self._op:
            with self._lock:
                self._gen += 1
                self._cancel_timer()
                proc, waiter = self._proc, self._waiter
                if proc is None or waiter is None:
                    # Nothing runs. Still say so, unless that is already what we said last:
                    # an exited/failed workload with a restart pending is now stopped for good.
                    quiet = {DriverState.FENCED}
                    if final is DriverState.STOPPED:
                        quiet.add(DriverState.STOPPED)  # stop after fence stays fenced
                    if self._state not in quiet:
                        self._set(final, f"{reason} (was {self._state})")
                    return
                self._halting = True
                self._set(DriverState.STOPPING, reason, pid=proc.pid)
                self._mark(f"{final.name.lower()} pid {proc.pid}: {reason}")

            def leader_done(timeout: float) -> bool:
                waiter.join(timeout)
                return not waiter.is_alive()

            t0 = time.monotonic()
            gone, how = terminate_group(proc.pid, leader_done, self.stop_grace)
            took = time.monotonic() - t0
            with self._lock:
                self._proc = None
                self._waiter = None
                self._halting = False
                code = proc.returncode
                if gone:
                    detail = f"{reason}: {how} in {took:.2f} s"
                    self._mark(detail)
                    self._set(final, detail, exit_code=code, pid=proc.pid)
                else:
                    detail = f"{final.name.lower()} failed: {how}"
                    self._mark(detail)
                    self._set(DriverState.UNKNOWN, detail, exit_code=code, pid=proc.pid)
