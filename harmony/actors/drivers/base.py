"""What every driver shares: states, the event it reports, and process-group helpers.

A driver is a plain thread-based object, not an actor: the WorkloadActor owns one, calls its
methods from the actor thread, and learns about changes through ``on_event``. That callback is
called from driver threads (and from the caller's thread during ``start``/``stop``/``fence``),
always while the driver's state lock is held, so events arrive in the order the states were
taken. It must therefore be quick and must not call back into the driver from another thread
(an actor that just ``tell``s itself the event is exactly right).
"""

from __future__ import annotations

import abc
import contextlib
import enum
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Generic, TypeVar

import msgspec

from harmony import procfs
from harmony.config import HooksDriverConfig, ProcessDriverConfig
from harmony.guard import DEADLINE_ENV, TOKEN_ENV
from harmony.private_files import open_private_append, private_dir

from .containment import CONTAINMENT_ENV
from .tether import TetherSpec

log = logging.getLogger(__name__)

ConfigT = TypeVar("ConfigT", ProcessDriverConfig, HooksDriverConfig)

POLL = 0.02
"""How often waits re-check a process group: short enough that stop/fence return promptly."""
KILL_WAIT = 5.0
"""How long to wait for a SIGKILLed group to vanish before declaring it unkillable."""
TAIL_BYTES = 64 * 1024
"""``output_tail`` reads at most this much from the end of the log (lines can be long)."""


class DriverState(enum.StrEnum):
    """Where a workload is, as far as its driver knows.

    `STOPPED`, `FENCED` and `EXITED` are facts, never guesses: for `process`, no process of
    the copy's containment is left; for `hooks`, the stop or fence hook exited 0 and, when a
    probe is configured, a probe afterwards reported the copy down. Anything less is
    `UNKNOWN`.
    """

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    FENCED = "fenced"
    """Confirmed down after a fence (the same confirmation as `STOPPED`)."""
    EXITED = "exited"
    """The copy ended on its own and nothing of its containment is left (`restarting`: the
    restart policy brings it back)."""
    UNKNOWN = "unknown"
    """The copy may still run: a failed probe, a failed or timed-out stop/fence hook, a
    spawn error, a containment that survived SIGKILL. Never a stop: the caller fences."""


class DriverEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One state transition, as told to the actor (and recorded by the simulator).

    ``mono`` comes from the driver's injected monotonic clock: on one Linux machine it is the
    same clock in every process, so a simulation can order events of different sites.
    """

    workload: str
    state: DriverState
    detail: str = ""
    exit_code: int | None = None
    """Process exit status; negative means killed by that signal (``subprocess`` convention)."""
    token: int | None = None
    """The fencing token the workload was started with (None without a lease)."""
    pid: int | None = None
    restarting: bool = False
    """`EXITED` only: the driver's restart policy starts the copy again by itself."""
    mono: float = msgspec.field(default_factory=time.monotonic)
    wall: float = msgspec.field(default_factory=time.time)


EventCallback = Callable[[DriverEvent], None]


class Driver(abc.ABC, Generic[ConfigT]):
    """Starts, stops, fences and probes one workload. Every method is safe in every state."""

    def __init__(
        self,
        workload: str,
        site: str,
        config: ConfigT,
        log_dir: Path,
        on_event: EventCallback,
        monotonic: Callable[[], float] = time.monotonic,
        stop_grace: float = 2.0,
        *,
        containment: str = "",
        tether: TetherSpec | None = None,
    ) -> None:
        self.workload = workload
        self.site = site
        self.config: ConfigT = config
        self.log_dir = Path(log_dir)
        self.log_path = self.log_dir / f"{workload}.log"
        self.stop_grace = stop_grace
        self.containment = containment or f"{site}.local.{workload}"
        """The id every process of this workload carries (see `containment`)."""
        self.tether = tether
        """Set for absolute-consistency: tokened copies get a watcher outside the agent that
        fences them at their fence deadline (see `tether`)."""
        self._on_event = on_event
        self._monotonic = monotonic
        self._state = DriverState.STOPPED
        self._token: int | None = None
        self._closed = False
        # _op serialises lifecycle operations (start/stop/fence/restart/close), which may block
        # for up to the grace; _lock guards the fields that background threads read and is
        # only ever held briefly. Order: _op before _lock, never the reverse.
        self._op = threading.RLock()
        self._lock = threading.RLock()
        private_dir(self.log_dir)

    def deadline_file(self) -> Path | None:
        """The fence deadline file of the current token's copy (None: no tether, no token)."""
        if self.tether is None or self._token is None:
            return None
        return self.tether.deadline_file(self._token)

    # -- public API ---------------------------------------------------------------------------

    @property
    def state(self) -> DriverState:
        with self._lock:
            return self._state

    @property
    def pid(self) -> int | None:
        """The workload's process id when the driver runs it itself (hooks: None)."""
        return None

    @property
    def token(self) -> int | None:
        """The fencing token of the current (or last) start."""
        with self._lock:
            return self._token

    @abc.abstractmethod
    def start(self, token: int | None) -> None:
        """Start the workload with this fencing token; a no-op (logged) if already active."""

    @abc.abstractmethod
    def stop(self, reason: str) -> None:
        """Stop gracefully; returns with exactly one report: ``stopped`` (confirmed) or
        ``unknown`` (it may still run), also when nothing seemed to run."""

    @abc.abstractmethod
    def fence(self, reason: str) -> None:
        """Make sure the workload is not active when this returns: exactly one report,
        ``fenced`` (confirmed) or ``unknown`` (the caller fences again, with backoff). Works
        with no handle on the copy (a new driver, an agent's boot): it finds it by its
        containment (process) or runs the fence hook (hooks)."""

    @abc.abstractmethod
    def probe(self) -> bool:
        """True when the workload is healthy right now."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop background threads (and whatever the driver itself runs). Idempotent."""

    def _active(self) -> str:
        """What makes a start now a no-op ("already running (pid 12)"), "" when nothing."""
        return ""

    def _start_refused(self, token: int | None) -> bool:
        """True (logged) when `start(token)` must do nothing: the driver is closed, or its
        copy is already active (`_active`). Called with `_lock` held."""
        if self._closed:
            log.warning("%s: start(%s) ignored: driver closed", self.workload, token)
            return True
        active = self._active()
        if active:
            log.info(
                "%s: start(token=%s) ignored: already %s, token %s",
                self.workload,
                token,
                active,
                self._token,
            )
        return bool(active)

    def output_tail(self, n: int = 50) -> list[str]:
        """The last ``n`` lines of the workload's log file (all runs, with harmony markers)."""
        return tail_lines(self.log_path, n)

    # -- helpers for subclasses ---------------------------------------------------------------

    def _set(
        self,
        state: DriverState,
        detail: str = "",
        *,
        exit_code: int | None = None,
        pid: int | None = None,
        restarting: bool = False,
    ) -> None:
        """Take a state and report it. Emitting under the lock keeps events in order."""
        with self._lock:
            self._state = state
            event = DriverEvent(
                workload=self.workload,
                state=state,
                detail=detail,
                exit_code=exit_code,
                token=self._token,
                pid=pid,
                restarting=restarting,
                mono=self._monotonic(),
                wall=time.time(),
            )
            log.info("%s/%s: %s %s", self.site, self.workload, state, detail)
            try:
                self._on_event(event)
            except Exception as e:
                # A dead or broken listener (e.g. a tell to an actor that already stopped, while
                # close() runs) must not break the driver or leave a stop halfway through.
                log.warning("%s: on_event failed for %s: %r", self.workload, state, e)
                log.debug("on_event traceback", exc_info=True)

    def _env(self, extra: dict[str, str], **more: str) -> dict[str, str]:
        """The allowlisted part of os.environ (`inherited_env`) + the config's env + the
        HARMONY_* variables (which nobody overrides)."""
        env = {**inherited_env(os.environ, self.config.pass_env), **extra}
        env["HARMONY_WORKLOAD"] = self.workload
        env["HARMONY_SITE"] = self.site
        env[CONTAINMENT_ENV] = self.containment
        # An agent started by something that set these must not leak stale values.
        env.pop(TOKEN_ENV, None)
        env.pop(DEADLINE_ENV, None)
        if self._token is not None:
            env[TOKEN_ENV] = str(self._token)
        deadline = self.deadline_file()
        if deadline is not None:
            env[DEADLINE_ENV] = str(deadline)
        env.update(more)
        return env

    def _mark(self, text: str) -> None:
        """Append a harmony line to the log, so runs and hooks can be told apart."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        try:
            with os.fdopen(open_private_append(self.log_path), "a", encoding="utf-8") as f:
                f.write(f"[harmony {stamp}] {text}\n")
        except OSError:
            log.exception("%s: cannot write %s", self.workload, self.log_path)

    def _open_log(self) -> int:
        """A raw O_APPEND descriptor for a child's stdout/stderr.

        The child writes straight into the file (no pipe through us): its output is never
        lost or blocked while the agent is busy, and survives an agent restart.
        """
        return open_private_append(self.log_path)  # 0600: output may hold secrets


# -- environment -----------------------------------------------------------------------------

INHERITED_ENV = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR"})
"""What a workload inherits from the agent's environment (and every ``LC_*``): enough to run
a program as the agent's user and locale, nothing that may hold the agent's secrets (NATS
credentials, cloud tokens of the service manager). The operator adds names with `pass_env`."""


def inherited_env(environ: Mapping[str, str], pass_env: Iterable[str] = ()) -> dict[str, str]:
    """The part of `environ` a workload (or hook) gets: `INHERITED_ENV`, ``LC_*`` and the
    config's `pass_env` names."""
    chosen = INHERITED_ENV | set(pass_env)
    return {k: v for k, v in environ.items() if k in chosen or k.startswith("LC_")}


# -- output ----------------------------------------------------------------------------------


def tail_lines(path: Path, n: int, start: int = 0) -> list[str]:
    """Last ``n`` lines of ``path`` from byte offset ``start`` on (``[]`` if it is missing)."""
    if n <= 0:
        return []
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            begin = max(start, size - TAIL_BYTES)
            f.seek(begin)
            data = f.read()
    except OSError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    if begin > start and lines:
        lines = lines[1:]  # the first line was cut in the middle
    return lines[-n:]


def log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# -- process groups --------------------------------------------------------------------------


def group_members(pgid: int) -> list[int] | None:
    """Live (non-zombie) processes of group `pgid`; None when there is no procfs to read.

    Zombies are left out: an orphaned grandchild is reparented to PID 1 (or to the agent itself
    when it runs as PID 1 in a container), which may never reap it, yet it runs nothing.
    """
    if procfs.pids() is None:
        return None
    return [st.pid for st in procfs.live(exclude=()) if st.pgrp == pgid]


def group_alive(pgid: int) -> bool:
    """True while any non-zombie process is in the group."""
    members = group_members(pgid)
    if members is not None:
        return bool(members)
    try:  # no procfs: signal 0 cannot tell zombies apart, accept that
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(pgid, sig)


def terminate_group(
    pgid: int, leader_done: Callable[[float], bool], grace: float
) -> tuple[bool, str]:
    """SIGTERM the whole group, wait up to ``grace``, then SIGKILL it.

    ``leader_done(timeout)`` waits up to ``timeout`` for the group leader to be reaped and says
    whether it was. Returns (gone, how): ``gone`` is False only if members survived SIGKILL
    (e.g. stuck in uninterruptible sleep), which a fence must report as a failure.
    """
    signal_group(pgid, signal.SIGTERM)
    if _wait_group(pgid, leader_done, grace):
        return True, "terminated by SIGTERM"
    signal_group(pgid, signal.SIGKILL)
    if _wait_group(pgid, leader_done, KILL_WAIT):
        return True, f"killed by SIGKILL after {grace:g} s grace"
    return False, f"process group {pgid} still alive {KILL_WAIT:g} s after SIGKILL"


def _wait_group(pgid: int, leader_done: Callable[[float], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        leader_gone = leader_done(max(0.0, min(POLL, remaining)))
        if leader_gone and not group_alive(pgid):
            return True
        if remaining <= 0:
            return False
        if leader_gone:  # otherwise leader_done has just waited
            time.sleep(max(0.0, min(POLL, remaining)))


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exited with code {code}"
