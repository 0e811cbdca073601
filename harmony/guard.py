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
see `TokenGuard` (and docs/fencing-guard.md).
"""

from __future__ import annotations

import contextlib
import os
import time

# Only what reading a deadline needs is loaded with the module: a copy's keeper (one process
# per copy, see `harmony.actors.drivers.tether_main`) reads deadlines with it, and `sqlite3`,
# `pathlib`, `random` and `typing` would cost each keeper megabytes. The guard imports them
# when it is used.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable
    from os import PathLike
    from pathlib import Path
    from typing import TypeVar

    T = TypeVar("T")

TOKEN_ENV = "HARMONY_FENCING_TOKEN"
DEADLINE_ENV = "HARMONY_FENCE_DEADLINE_FILE"
RELEASED = "released"
"""The content of a deadline file whose copy the agent confirmed stopped."""
SELF_FENCED_EXIT = 87
"""The exit status of a copy that stopped because its deadline passed. It equals the tether's
``TETHER_FENCED``, so the process driver reports the copy fenced, not crashed (no restart)."""


def write_deadline(path: str | PathLike[str], deadline: float | str) -> None:
    """Atomically replace the content of `path` (a reader never sees a torn number)."""
    text = deadline if isinstance(deadline, str) else f"{deadline:.6f}"
    atomic_write(path, (text + "\n").encode())


_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def temp_tag() -> int:
    """32 random bits for a temporary file's name (os.urandom: no `random` module to load
    in the keeper, which writes no file but imports this one)."""
    return int.from_bytes(os.urandom(4), "big")


def atomic_write(path: str | PathLike[str], data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data`, whole or not at all, never following a symlink.

    The data goes to a new temporary file in the same directory, created exclusively
    (O_EXCL|O_NOFOLLOW: a file or symlink planted at that name makes the open fail, it is
    never written through), fsynced, then renamed over `path`; a rename replaces a symlink at
    `path` itself rather than the file it points to. Only its owner may read it (`mode`).
    Raises OSError (the temporary file is removed).
    """
    where, name = os.path.split(os.fspath(path))
    for _attempt in range(8):
        tmp = os.path.join(where, f".{name}.{os.getpid()}.{temp_tag():08x}.tmp")
        try:
            fd = os.open(tmp, _TMP_FLAGS, mode)
        except FileExistsError:  # planted, or a (very) unlucky collision: another name
            continue
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return
    raise FileExistsError(f"no free temporary name next to {path}")


def read_deadline_state(path: str | PathLike[str]) -> float | str | None:
    """A deadline file: the monotonic deadline, `RELEASED`, or None (missing, unreadable,
    garbage). The hooks watcher needs released apart: it then leaves without fencing."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except OSError:
        return None
    if text == RELEASED:
        return RELEASED
    try:
        return float(text)
    except ValueError:
        return None


def read_deadline(path: str | PathLike[str]) -> float | None:
    """The monotonic deadline in `path`; None when missing, unreadable or released."""
    state = read_deadline_state(path)
    return state if isinstance(state, float) else None


def deadline_passed(path: str | PathLike[str] | None = None, now: float | None = None) -> bool:
    """True when this copy must not act any more (see the module docstring).

    `path` defaults to ``$HARMONY_FENCE_DEADLINE_FILE``; without one (a workload that runs
    without a lease) nothing ever passes.
    """
    if path is None:
        env = os.environ.get(DEADLINE_ENV)
        if not env:
            return False
        path = env
    deadline = read_deadline(path)
    return deadline is None or (time.monotonic() if now is None else now) >= deadline


# -- the fencing-token guard -----------------------------------------------------------------


class GuardError(Exception):
    """The guard could not do its job (database unusable, locked too long, bad token)."""


class GuardBusy(GuardError):
    """The database stayed locked by other writers for longer than the guard's timeout."""


class StaleToken(GuardError):
    """A write with a token lower than one this resource already committed: refused."""

    def __init__(self, token: int, highest: int) -> None:
        super().__init__(f"stale fencing token {token}: this resource already committed {highest}")
        self.token = token
        self.highest = highest


_TABLE = "harmony_fence"
_SLICE = 0.1
"""SQLite's own busy wait per attempt (s); longer waits happen in `_retry`'s Python sleeps,
where signal handlers run (a SIGTERM is not held up for the whole timeout)."""


def _busy(e: sqlite3.Error) -> bool:
    import sqlite3

    # Extended codes (BUSY_SNAPSHOT, BUSY_RECOVERY, ...) carry the primary code in the low byte.
    code = getattr(e, "sqlite_errorcode", None)
    if code is None:
        return "locked" in str(e) or "busy" in str(e)
    return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class TokenGuard:
    """Commits a resource's writes only for tokens at least as high as any it committed before.

    The guard keeps, per resource, the highest token committed (table ``harmony_fence`` in the
    same database). `write` checks the token against it and runs the caller's writes in ONE
    ``BEGIN IMMEDIATE`` transaction, then records the token and commits. Why one transaction:
    checked apart, a stale copy could read "highest 5" (its own), the next holder commit with
    7, and the stale copy then write on the strength of a check that no longer holds. BEGIN
    IMMEDIATE takes SQLite's write lock *before* the check, so no other writer commits between
    check and write; and the new highest commits with the data, so a crash never leaves one
    without the other. Writes therefore commit in token order: a copy frozen inside its
    transaction still commits before the next holder's first write, never after it (holding
    the lock meanwhile: the next holder's writes wait, and get `GuardBusy` after `timeout`).

    One guard per thread (it owns one connection). Several processes may share the database
    (WAL mode). Reads that decide a write must happen inside ``fn``: only they see the state
    the write commits on.
    """

    def __init__(self, db_path: str | Path, resource: str = "default", *, timeout: float = 10.0):
        """Open (creating if needed) the database; `timeout`: how long a write may wait for
        other writers' locks (bounded retries of SQLite's busy wait) before GuardBusy."""
        import sqlite3
        from pathlib import Path

        if not isinstance(resource, str) or not resource:
            raise GuardError(f"resource must be a non-empty string, got {resource!r}")
        if timeout <= 0:
            raise GuardError(f"timeout must be positive, got {timeout!r}")
        self.db_path = Path(db_path)
        self.resource = resource
        self.timeout = timeout
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves (Python's implicit
            # transactions would start a DEFERRED one, which can fail to upgrade mid-way).
            self._conn = sqlite3.connect(
                self.db_path, timeout=min(timeout, _SLICE), isolation_level=None
            )
        except sqlite3.Error as e:
            raise GuardError(f"cannot open guard database {self.db_path}: {e}") from e
        try:
            self._retry("set up", self._setup)
        except BaseException:
            self._conn.close()
            raise

    def _setup(self) -> None:
        mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise GuardError(f"{self.db_path}: cannot use WAL mode (journal_mode is {mode})")
        # FULL: a commit the resource acknowledged (and its highest token) survives power loss.
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(
            f"CREATE TABLE IF NOT EXISTS {_TABLE} "
            "(resource TEXT PRIMARY KEY, highest INTEGER NOT NULL, committed_at REAL NOT NULL)"
        )

    def _retry(self, what: str, step: Callable[[], T]) -> T:
        """Run `step`, retrying SQLITE_BUSY/LOCKED (which SQLite's own busy handler does not
        cover in every case, e.g. a WAL snapshot gone stale) until `timeout` has passed."""
        import random
        import sqlite3

        deadline = time.monotonic() + self.timeout
        attempts, pause = 0, 0.01
        while True:
            attempts += 1
            try:
                return step()
            except sqlite3.Error as e:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if not _busy(e):
                    raise GuardError(f"{self.db_path}: cannot {what}: {e}") from e
                if time.monotonic() + pause >= deadline:
                    raise GuardBusy(
                        f"{self.db_path}: resource {self.resource!r}: cannot {what}, the database"
                        f" stayed locked for {self.timeout:g} s ({attempts} attempts): {e}"
                    ) from e
            time.sleep(pause * random.uniform(0.5, 1.5))  # jitter: writers do not march in step
            pause = min(pause * 2, 0.1)

    def highest(self) -> int | None:
        """The highest token committed for this resource (None: no write yet)."""
        return self._retry("read the highest token", self._select_highest)

    def _select_highest(self) -> int | None:
        row = self._conn.execute(
            f"SELECT highest FROM {_TABLE} WHERE resource = ?", (self.resource,)
        ).fetchone()
        return None if row is None else int(row[0])

    def write(self, token: int, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` and commit, in one transaction, if `token` is not stale.

        Raises `StaleToken` (nothing written) when the resource already committed a higher
        token; equal tokens pass (one holder writes many times). `fn` runs at most once; if it
        raises, everything rolls back and the exception propagates. `GuardBusy` when other
        writers held the lock longer than the timeout; `GuardError` for other database errors.
        """
        import sqlite3

        if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < 2**63:
            raise GuardError(f"fencing token must be a non-negative int64, got {token!r}")
        # Only taking the lock is retried: once it is held, nothing else can make us busy, and
        # fn (which may have effects outside the database) must not run twice.
        self._retry("take the write lock", lambda: self._conn.execute("BEGIN IMMEDIATE"))
        try:
            highest = self._select_highest()
            if highest is not None and token < highest:
                raise StaleToken(token, highest)
            result = fn(self._conn)
            self._conn.execute(
                f"INSERT INTO {_TABLE} (resource, highest, committed_at) VALUES (?, ?, ?) "
                "ON CONFLICT (resource) DO UPDATE SET "
                "highest = excluded.highest, committed_at = excluded.committed_at",
                (self.resource, token, time.time()),
            )
            self._conn.execute("COMMIT")
        except BaseException as e:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise GuardError(f"{self.db_path}: write with token {token} failed: {e}") from e
            raise
        return result

    def claim(self, token: int) -> None:
        """Commit just the token: from now on lower tokens are refused. A new holder claims
        first, so a stale copy cannot commit in the gap before the holder's first real write."""
        self.write(token, lambda _conn: None)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> TokenGuard:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
