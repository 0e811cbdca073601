"""A secure embedded server follows its roster: reload on change (a mixin of EmbeddedServer).

Kept apart from the process supervision in `harmony.mesh.server`: this is the one thing a
running server learns after it started (rotation, a new site or identity).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path

from harmony.guard import atomic_write
from harmony.mesh.conf_text import render_conf
from harmony.mesh.server_conf import ServerSpec


class RosterReload:
    """`reload` and the roster watcher; the state lives in `EmbeddedServer`."""

    spec: ServerSpec
    roster_poll: float
    reloads: int
    _lock: threading.RLock
    _proc: subprocess.Popen[bytes] | None
    _stopping: threading.Event
    _watcher: threading.Thread | None

    def _emit(self, kind: str, detail: str) -> None:
        raise NotImplementedError

    def reload(self) -> bool:
        """Render the configuration again (rereading the roster) and SIGHUP the server.

        nats-server reloads authorization and TLS on SIGHUP: a user no longer in the roster
        is disconnected and refused from then on, the others keep their connections. A
        roster that cannot be read keeps the running configuration (logged, "reload-failed").
        """
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                return False
            try:
                text = render_conf(self.spec)
            except Exception as e:
                self._emit("reload-failed", f"keeping the running configuration: {e}")
                return False
            atomic_write(self.spec.conf_file, text.encode())
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGHUP)  # setpriv execs: this pid is nats-server
            self.reloads += 1
        self._emit("reloaded", f"configuration {self.spec.conf_file}")
        return True

    def _watch_roster(self) -> None:
        """A secure server follows its roster file: a change (rotation, a new site or
        identity) reloads it. Polling, not a signal: SIGHUP to the agent means stop."""
        sec = self.spec.security
        with self._lock:
            if sec is None or (self._watcher is not None and self._watcher.is_alive()):
                return
            self._watcher = threading.Thread(
                target=self._follow,
                args=(sec.roster_file,),
                daemon=True,
                name=f"nats-server-roster[{self.spec.name}]",
            )
            self._watcher.start()

    def _follow(self, roster: Path) -> None:
        def stamp() -> tuple[int, int, int] | None:
            try:
                st = roster.stat()
            except OSError:
                return None
            return (st.st_mtime_ns, st.st_size, st.st_ino)

        seen = stamp()
        while not self._stopping.wait(self.roster_poll):
            now = stamp()
            if now != seen and now is not None:
                seen = now
                self.reload()
