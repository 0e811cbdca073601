"""The embedded nats-server as a supervised child process.

A site may run its own nats-server next to its agent. `EmbeddedServer` renders the server's
configuration from a `ServerSpec` (`harmony.mesh.server_conf`), starts the binary in its own
process group, waits until it serves (`harmony.mesh.monitor`), restarts it with backoff if it
dies, and stops it (also when the Python process exits, or is killed: see
`server_conf.tied_to_parent`).

Only the standard library and nats-py are used here (nothing from ``harmony.actors`` or above).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Self

from harmony.mesh.conf_text import render_conf
from harmony.mesh.monitor import jetstream_ready, serves, wait_jetstream_ready
from harmony.mesh.reload import RosterReload
from harmony.mesh.server_conf import (
    ServerSpec,
    ServerStartError,
    nats_server_binary,
    tied_to_parent,
)
from harmony.private_files import atomic_write, open_private_append, private_dir

__all__ = [
    "EmbeddedServer",
    "EventCallback",
    "ServerSpec",
    "ServerStartError",
    "install_exit_handlers",
    "jetstream_ready",
    "nats_server_binary",
    "render_conf",
    "wait_jetstream_ready",
]

log = logging.getLogger(__name__)

EventCallback = Callable[[str, str], None]
"""``on_event(kind, detail)``; kind is "started", "exited" or "restarting"."""

# --- the supervised process -----------------------------------------------------------------

_live: set[EmbeddedServer] = set()
_live_lock = threading.Lock()
_handlers_installed = False


def _stop_all_at_exit() -> None:
    with _live_lock:
        servers = list(_live)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop(grace=2.0)


atexit.register(_stop_all_at_exit)


def _on_fatal_signal(signum: int, frame: FrameType | None) -> None:
    """SIGTERM/SIGHUP with the default action would skip atexit: stop our servers first.

    Only async-signal-tolerant work here: no locks, just flags and kill(2).
    """
    for server in list(_live):
        server._dying = True
        server._signal_group(signal.SIGTERM)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def install_exit_handlers() -> None:
    """Make SIGTERM and SIGHUP stop this process's servers before it dies.

    Installs a handler only where the signal still has its default action (an application's
    own handler is left alone; it should stop its servers itself). Must run on the main
    thread; `EmbeddedServer.start` calls it when it runs there. Normal interpreter exit is
    covered by `atexit` in any case.
    """
    global _handlers_installed
    if _handlers_installed or threading.current_thread() is not threading.main_thread():
        return
    _handlers_installed = True
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(sig) is signal.SIG_DFL:
                signal.signal(sig, _on_fatal_signal)


@dataclass(eq=False)
class EmbeddedServer(RosterReload):
    """One nats-server child process, supervised.

    `start` writes the configuration, launches the server in its own process group and waits
    until it serves. If `supervise` is true, a thread then restarts it whenever it dies
    unexpectedly, with backoff `backoff_initial` doubling up to `backoff_max` (reset after
    it stayed up `backoff_reset_after` seconds). `stop` ends supervision and the process.
    Servers still running when the interpreter exits normally (or on SIGTERM/SIGHUP, where
    those have the default action) are stopped.
    """

    spec: ServerSpec
    on_event: EventCallback | None = None
    supervise: bool = True
    binary: Path | None = None
    backoff_initial: float = 0.2
    backoff_max: float = 5.0
    backoff_reset_after: float = 10.0
    restart_timeout: float = 20.0
    roster_poll: float = 1.0
    """How often a secure server's roster file is checked for changes (then: `reload`)."""
    restarts: int = field(default=0, init=False)
    """How many times the supervisor restarted the server."""

    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _started_at: float = field(default=0.0, init=False, repr=False)
    _log_offset: int = field(default=0, init=False, repr=False)
    _dying: bool = field(default=False, init=False, repr=False)
    _watcher: threading.Thread | None = field(default=None, init=False, repr=False)
    reloads: int = field(default=0, init=False)
    """How many times the configuration was reloaded (roster changes)."""

    # -- public ------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        proc = self._proc
        return proc is not None and proc.poll() is None

    @property
    def client_url(self) -> str:
        return self.spec.client_url

    @property
    def http_url(self) -> str:
        return self.spec.http_url

    def start(self, timeout: float = 20.0) -> None:
        """Launch the server and wait until it serves; no-op if it is already running.

        Raises `ServerStartError` (with the log tail) if it exits or is not ready in time.
        """
        with self._lock:
            if self.running:
                return
            thread = self._thread
            restarting = thread is not None and thread.is_alive() and not self._stopping.is_set()
            restarts_before = self.restarts
            if not restarting:
                self._stopping.clear()
                self._dying = False
                with _live_lock:
                    _live.add(self)
        install_exit_handlers()
        if restarting:  # the supervisor is bringing it back: wait for that, do not race it
            self._wait_restarted(restarts_before, timeout)
            return
        self._rotate_log()
        try:
            self._launch_and_wait(timeout)
        except BaseException:
            with _live_lock:
                _live.discard(self)
            raise
        self._emit("started", f"pid {self.pid} serving {self.client_url}")
        self._watch_roster()
        if self.supervise:
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._supervise,
                        name=f"nats-server-supervisor[{self.spec.name}]",
                        daemon=True,
                    )
                    self._thread.start()

    def stop(self, grace: float = 5.0) -> None:
        """End supervision; SIGTERM the process group, SIGKILL it after `grace` seconds.

        Idempotent, and safe when the process is already dead or was never started.
        """
        self._stopping.set()
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                self._signal_group(signal.SIGTERM)
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    self._signal_group(signal.SIGKILL)
                    proc.wait()
            thread = self._thread
            watcher = self._watcher
        for t in (thread, watcher):
            if t is not None and t is not threading.current_thread():
                t.join()
        with self._lock:
            self._thread = None
            self._watcher = None
        with _live_lock:
            _live.discard(self)

    def kill(self) -> None:
        """SIGKILL the process group and reap it (a crash, for tests).

        The supervisor, if any, restarts the server as after any unexpected exit.
        """
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                return
            self._signal_group(signal.SIGKILL)
        proc.wait()

    def log_tail(self, lines: int = 40, *, since_last_start: bool = False) -> str:
        """The last `lines` lines of the server's log file."""
        try:
            with open(self.spec.log_file, "rb") as f:
                if since_last_start:
                    f.seek(self._log_offset)
                data = f.read()
        except OSError:
            return ""
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------

    def _emit(self, kind: str, detail: str) -> None:
        log.info("nats-server %s: %s: %s", self.spec.name, kind, detail)
        if self.on_event is None:
            return
        try:
            self.on_event(kind, detail)
        except Exception:
            log.exception("on_event callback failed for %s %r", kind, detail)

    def _wait_restarted(self, restarts_before: int, timeout: float) -> None:
        """Wait until the supervisor completed the restart it was doing."""
        deadline = time.monotonic() + timeout
        while not (self.restarts > restarts_before and self.running):
            if time.monotonic() >= deadline or self._stopping.is_set():
                raise ServerStartError(
                    f"nats-server {self.spec.name} was being restarted by its supervisor and "
                    f"did not serve within {timeout:g} s",
                    self.log_tail(),
                )
            time.sleep(0.05)

    def _rotate_log(self, max_bytes: int = 16 * 1024 * 1024) -> None:
        """Keep one previous log when the log grew past `max_bytes` (checked on `start`)."""
        log_file = self.spec.log_file
        with contextlib.suppress(OSError):
            if log_file.stat().st_size > max_bytes:
                log_file.replace(log_file.with_suffix(".log.1"))

    def _signal_group(self, sig: int) -> None:
        """Signal the process group of the current child, if it was not reaped yet.

        An unreaped child keeps its pid (and so its group id) reserved, so this never hits a
        recycled pid.
        """
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def _spawn(self) -> subprocess.Popen[bytes]:
        """Write the config and start the binary. Caller holds `_lock`."""
        spec = self.spec
        binary = self.binary or nats_server_binary()
        private_dir(spec.store_dir)  # 0700: the store, its config and log are the site's
        atomic_write(spec.conf_file, render_conf(spec).encode())
        with os.fdopen(open_private_append(spec.log_file), "ab") as logf:
            self._log_offset = logf.tell()
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            logf.write(f"=== harmony: starting {binary} at {stamp} ===\n".encode())
            logf.flush()
            proc = subprocess.Popen(
                tied_to_parent([str(binary), "-c", str(spec.conf_file)]),
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        self._proc = proc
        self._started_at = time.monotonic()
        return proc

    def _launch_and_wait(self, timeout: float) -> None:
        with self._lock:
            if self._stopping.is_set():
                raise ServerStartError(f"nats-server {self.spec.name}: stop requested")
            proc = self._spawn()
        deadline = time.monotonic() + timeout
        interval = 0.02
        while True:
            if proc.poll() is not None:
                raise ServerStartError(
                    f"nats-server {self.spec.name} exited with code {proc.returncode} "
                    f"during start-up (config {self.spec.conf_file})",
                    self.log_tail(since_last_start=True),
                )
            if serves(self.spec) and proc.poll() is None:
                return
            if self._stopping.is_set() or time.monotonic() >= deadline:
                reason = "stop requested" if self._stopping.is_set() else f"{timeout:g} s passed"
                with self._lock:
                    if self._proc is proc:
                        self._signal_group(signal.SIGKILL)
                proc.wait()
                raise ServerStartError(
                    f"nats-server {self.spec.name} not ready ({reason}; "
                    f"checked {self.spec.http_url}/healthz and {self.client_url})",
                    self.log_tail(since_last_start=True),
                )
            time.sleep(interval)
            interval = min(interval * 2, 0.2)

    def _supervise(self) -> None:
        delay = self.backoff_initial
        while not self._stopping.is_set():
            proc = self._proc
            if proc is None:
                return
            rc = proc.wait()
            if self._stopping.is_set() or self._dying:
                return
            if time.monotonic() - self._started_at >= self.backoff_reset_after:
                delay = self.backoff_initial
            self._emit("exited", f"pid {proc.pid} exited with code {rc}")
            while True:
                self._emit("restarting", f"in {delay:.1f} s (restart #{self.restarts + 1})")
                if self._stopping.wait(delay):
                    return
                delay = min(delay * 2, self.backoff_max)
                try:
                    self._launch_and_wait(self.restart_timeout)
                except ServerStartError as e:
                    if self._stopping.is_set():
                        return
                    self._emit("exited", str(e).splitlines()[0])
                    continue
                except Exception as e:  # e.g. the data dir became unwritable: keep trying
                    log.exception("restarting nats-server %s failed", self.spec.name)
                    self._emit("exited", f"restart failed: {e!r}")
                    continue
                self._emit("started", f"pid {self.pid} serving {self.client_url}")
                self.restarts += 1  # after the event: waiters on `restarts` see it too
                break
