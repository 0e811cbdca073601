"""ProcessDriver: the workload is a real command, run as one contained copy under a keeper.

Every copy runs under the keeper process (`tether`), which holds the copy's containment
together (`containment`: the env marker, the workload's cgroup v2 where possible, the
keeper's subreaper tree) and fences the copy itself when the agent dies or, for a tokened
absolute-consistency copy, when the fence deadline passes. What the driver reports is a
fact about that containment, never a guess about one pid:

* STOPPED / FENCED / EXITED: a scan after the stop, fence or exit found no process of the
  containment left (remnants are SIGKILLed first);
* UNKNOWN: something of the copy may still run (members survived SIGKILL, leftovers of an
  earlier incarnation could not be cleared, the command could not be spawned). The caller
  fences again.

Every ``stop()`` ends with exactly one STOPPED or UNKNOWN event and every ``fence()`` with
exactly one FENCED or UNKNOWN, also when nothing runs: the caller waits for that report.
Output goes straight into ``<log_dir>/<workload>.log``; a waiter thread reaps the keeper
and applies the restart policy to exits nobody asked for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time

from harmony.config import ProcessDriverConfig

from .base import KILL_WAIT, Driver, DriverState, describe_exit
from .containment import Containment, describe
from .tether import TETHER_FENCED, tether_argv

log = logging.getLogger(__name__)

MAX_BACKOFF = 10.0
"""Restart delays double after each quick failure, up to this many seconds."""
HEALTHY_RUN = 10.0
"""A process that ran this long resets the backoff: its next failure is a fresh one."""


def resolve(argv0: str, cwd: str | None, env: dict[str, str]) -> str:
    """The executable `argv0` names, as the kernel would find it; FileNotFoundError if none.

    Needed up front because through the keeper a missing command is only the keeper's exit
    status, not the clear OSError callers report.
    """
    if os.sep in argv0:
        path = argv0 if os.path.isabs(argv0) else os.path.join(cwd or os.getcwd(), argv0)
        if os.path.isfile(path):
            if not os.access(path, os.X_OK):
                raise PermissionError(13, "Permission denied", argv0)
            return argv0
        raise FileNotFoundError(2, "No such file or directory", argv0)
    found = shutil.which(argv0, path=env.get("PATH", os.defpath))
    if found is None:
        raise FileNotFoundError(2, "No such file or directory", argv0)
    return found


class ProcessDriver(Driver[ProcessDriverConfig]):
    """Runs ``config.command`` under a keeper; restarts per ``config.restart``."""

    # Per-instance state, declared with immutable class defaults so the constructor stays the
    # base one (assignment shadows them per instance).
    _proc: subprocess.Popen[bytes] | None = None
    """The keeper of the current copy; None once its end was confirmed and reported."""
    _box: Containment | None = None
    _tethered: bool = False
    _timer: threading.Timer | None = None
    _started_at: float = 0.0
    _failures: int = 0
    """Quick failures in a row, for the restart backoff."""
    _gen: int = 0
    """Bumped by every start/stop/fence/close: a stale restart timer sees it and gives up."""

    @property
    def pid(self) -> int | None:
        """The keeper's pid (COMMAND is its child)."""
        with self._lock:
            return self._proc.pid if self._proc else None

    @property
    def box(self) -> Containment:
        """The copy's containment (found lazily: the cgroup lookup reads /proc)."""
        if self._box is None:
            self._box = Containment(self.containment)
        return self._box

    def _active(self) -> str:
        return f"running (pid {self._proc.pid})" if self._proc is not None else ""

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, token: int | None) -> None:
        with self._op:
            with self._lock:
                if self._start_refused(token):
                    return
                self._gen += 1  # a pending restart is replaced by this explicit start
                self._cancel_timer()
                self._token = token
                self._failures = 0
            self._spawn()

    def stop(self, reason: str) -> None:
        self._halt(reason, DriverState.STOPPED)

    def fence(self, reason: str) -> None:
        """Also without a copy of ours: kills whatever the containment holds (what an earlier
        incarnation left) and says what it found."""
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
        """Start one copy, on an empty containment only. Caller holds ``_op``."""
        cfg = self.config
        self._set(DriverState.STARTING, f"starting {shlex.join(cfg.command)}")
        self._mark(f"start token={self._token}: {shlex.join(cfg.command)}")
        env = self._env(cfg.env)
        try:
            if cfg.cwd and not os.path.isdir(cfg.cwd):
                raise FileNotFoundError(2, "No such file or directory", cfg.cwd)
            resolve(cfg.command[0], cfg.cwd or None, env)  # the clear error, before the keeper
        except OSError as e:
            return self._unknown(self._spawn_error(e))
        box = self.box
        cleaned = ""
        if not box.empty():
            result = box.kill(KILL_WAIT)
            found = f"{len(result.found)} leftover processes of {box.id}: {describe(result.found)}"
            if not result.confirmed:
                left = f"{len(result.survivors)} survived SIGKILL: {describe(result.survivors)}"
                return self._unknown(f"not started: found {found}; {left}")
            cleaned = f"; first killed {found} (confirmed gone)"
            self._mark(f"killed {found}")
        box.prepare()
        deadline = self.deadline_file()
        tether = self.tether if deadline is not None else None
        argv = tether_argv(
            cfg.command,
            containment=box.id,
            agent_pid=os.getpid(),
            grace=self.stop_grace,
            cgroup=box.cgroup.path if box.cgroup is not None else None,
            cwd=cfg.cwd or None,
            deadline_file=deadline,
            journal=tether.journal if tether is not None else None,
            site=self.site,
            workload=self.workload,
            incarnation=tether.incarnation if tether is not None else "",
            token=self._token,
        )
        fd = self._open_log()
        try:
            # Its own session: not in the agent's process group, not tied to the agent's
            # life (the keeper fences by itself when the agent dies).
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as e:
            return self._unknown(self._spawn_error(e))
        finally:
            os.close(fd)
        box.tree_root = proc.pid  # its subreaper tree: members even without the marker
        with self._lock:
            self._proc = proc
            self._tethered = tether is not None
            self._started_at = self._monotonic()
            how = f"pid {proc.pid} (keeper; {box.mechanism}"
            how += "; tethered to the fence deadline)" if tether is not None else ")"
            self._set(DriverState.RUNNING, how + cleaned, pid=proc.pid)
            # Started under the lock, so its "exited" can never overtake our "running".
            waiter = threading.Thread(
                target=self._wait, args=(proc,), name=f"driver-wait-{self.workload}", daemon=True
            )
            waiter.start()

    def _unknown(self, detail: str) -> None:
        self._mark(detail)
        self._set(DriverState.UNKNOWN, detail)

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
        """Waiter thread: reap the keeper; confirm the copy is gone; report; maybe restart."""
        code = proc.wait()
        with self._op:  # a stop/fence under way reports this end itself (and clears _proc)
            with self._lock:
                if self._proc is not proc:
                    return
            result = self.box.kill(KILL_WAIT)  # normally empty: the keeper killed what COMMAND left
            with self._lock:
                self._proc = None
                ended = f"pid {proc.pid} {describe_exit(code)}"
                if not result.confirmed:
                    n = len(result.survivors)
                    left = f"{n} processes of {self.box.id} survived SIGKILL"
                    self._unknown(f"{ended} but {left}: {describe(result.survivors)}")
                    return
                self.box.remove()
                if result.found:
                    ended += f"; killed what it left: {describe(result.found)}"
                if self._tethered and code == TETHER_FENCED:
                    # The keeper fenced it (its fence deadline passed with no renewal, or was
                    # withdrawn): never a crash to restart; only a new lease may run it again.
                    detail = f"fenced by its tether: no valid fence deadline ({ended})"
                    self._mark(detail)
                    self._set(DriverState.FENCED, detail, exit_code=code, pid=proc.pid)
                    return
                self._exited(proc.pid, code, ended)

    def _exited(self, pid: int, code: int, detail: str) -> None:
        """Report an exit nobody asked for and apply the restart policy. Holds both locks."""
        ran = self._monotonic() - self._started_at
        if ran >= HEALTHY_RUN:
            self._failures = 0
        policy = self.config.restart
        restart = not self._closed and (
            policy == "always" or (policy == "on-failure" and code != 0)
        )
        if restart:
            delay = min(MAX_BACKOFF, self.config.restart_delay * 2**self._failures)
            self._failures += 1
            detail += f"; restarting in {delay:g} s ({policy})"
            self._timer = threading.Timer(delay, self._restart, args=(self._gen,))
            self._timer.daemon = True
            self._timer.start()
        self._mark(detail)
        self._set(DriverState.EXITED, detail, exit_code=code, pid=pid, restarting=restart)

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
        """stop() and fence(): SIGTERM every member, the grace, SIGKILL, confirm empty."""
        with self._op:
            with self._lock:
                self._gen += 1
                self._cancel_timer()
                proc = self._proc
            box = self.box
            found = box.members()
            if proc is None and not found:
                box.remove()
                self._set(final, f"{reason}: nothing of {box.id} was running")
                return
            pid = proc.pid if proc is not None else None
            self._set(DriverState.STOPPING, reason, pid=pid)
            self._mark(f"{final.name.lower()} {box.id}: {reason}")
            t0 = time.monotonic()
            box.signal(signal.SIGTERM)  # the keeper ignores it: COMMAND answers
            confirmed, how = True, "terminated by SIGTERM"
            if not box.wait_empty(self.stop_grace):
                result = box.kill(KILL_WAIT)
                confirmed = result.confirmed
                how = f"killed by SIGKILL after {self.stop_grace:g} s grace"
                if not confirmed:
                    n = len(result.survivors)
                    how = f"{n} processes of {box.id} survived SIGKILL: "
                    how += describe(result.survivors)
            took = time.monotonic() - t0
            code = None
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = proc.wait(timeout=KILL_WAIT if confirmed else 0.05)
            what = ""
            if proc is None:  # not ours: what an earlier incarnation (or run actor) left
                what = f"found {len(found)} processes of {box.id}: {describe(found)}; "
            with self._lock:
                self._proc = None
                if confirmed:
                    box.remove()
                    detail = f"{reason}: {what}{how} in {took:.2f} s"
                    self._mark(detail)
                    self._set(final, detail, exit_code=code, pid=pid)
                else:
                    detail = f"{final.name.lower()} unconfirmed: {what}{how}"
                    self._unknown(detail)
