"""The example workload of the demo, the tests and the simulator: a real process that says
where it runs and records, on the machine's monotonic clock, what it did.

    python -m harmony.sim.example_workload [--tick 0.05] [--write-every 4]

It prints one line a second (the TUI shows the tail) and, from its environment:

* ``$HARMONY_RECORDS``: appends its own records (`harmony.sim.records`): ``start``, a
  ``tick`` every ``--tick`` s, ``write`` / ``write-rejected``, ``self-fenced``, ``stop``.
  A record's ``mono`` is the moment the copy checked its deadline and acted; the simulator
  takes these records, not the agent's journal, as the truth of when a copy was active.
* ``$HARMONY_FENCE_DEADLINE_FILE``: before the start, every tick and every write (again
  inside the write's transaction) it checks its fence deadline; once passed it records
  ``self-fenced`` and ``stop`` and exits with `SELF_FENCED_EXIT`. The check comes first,
  so a copy frozen past its deadline and resumed never records a tick or a write after it.
* ``$HARMONY_LEDGER``: at start it claims this SQLite file for ``$HARMONY_FENCING_TOKEN``
  (`harmony.guard.TokenGuard.claim`: no lower token commits after its start), then every
  ``--write-every`` ticks commits a transfer through the guard; `read_ledger` gives the
  simulator the committed rows in commit order.

Exit status: 0 on SIGTERM, `SELF_FENCED_EXIT` (87) after self-fencing, 1 when the ledger
cannot be used, 2 for bad arguments or environment.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from harmony.guard import (
    DEADLINE_ENV,
    RELEASED,
    SELF_FENCED_EXIT,
    TOKEN_ENV,
    GuardBusy,
    GuardError,
    StaleToken,
    TokenGuard,
    read_deadline,
)
from harmony.sim.records import LEDGER_ENV, RECORDS_ENV, Kind, Record, append_record, open_records

LEDGER_RESOURCE = "ledger"
EXIT_LEDGER = 1
EXIT_USAGE = 2
LEDGER_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS transfers (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " site TEXT NOT NULL, token INTEGER NOT NULL, pid INTEGER NOT NULL, mono REAL NOT NULL,"
    " amount INTEGER NOT NULL)"
)


@dataclass(frozen=True)
class LedgerRow:
    """One committed transfer. `id` grows in commit order (AUTOINCREMENT under the write lock)."""

    id: int
    site: str
    token: int
    pid: int
    mono: float
    amount: int


def read_ledger(db: str | Path) -> list[LedgerRow]:
    """Every committed transfer of the ledger `db`, in commit order ([] before any write)."""
    path = Path(db)
    if not path.exists():
        return []
    try:
        conn = sqlite3.connect(path, timeout=10.0)
        try:
            rows = conn.execute(
                "SELECT id, site, token, pid, mono, amount FROM transfers ORDER BY id"
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.Error as e:
        if "no such table" in str(e):
            return []
        raise ValueError(f"{path}: not a readable ledger: {e}") from e
    return [LedgerRow(*row) for row in rows]


def stale_commits(rows: Iterable[LedgerRow]) -> list[LedgerRow]:
    """The rows committed after a row with a higher token: each is a stale write that got in.

    The guard's promise is that this is empty: tokens never go down along commit order.
    """
    out: list[LedgerRow] = []
    highest: int | None = None
    for row in rows:
        if highest is not None and row.token < highest:
            out.append(row)
        else:
            highest = row.token
    return out


class _Fenced(Exception):
    """The fence deadline passed: this copy must not act any more."""

    def __init__(self, now: float, detail: str) -> None:
        super().__init__(detail)
        self.now = now
        self.detail = detail


class _UsageError(Exception):
    pass


def _describe_missing(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        return f"deadline file missing or unreadable: {path}"
    if text == RELEASED:
        return f"deadline file released: {path}"
    return f"deadline file holds no deadline ({text[:40]!r}): {path}"


def _hold_sigterm(now: float) -> float:
    """Hold SIGTERM back from here (the write lock is held) until `finally` unblocks it: a
    committed row always gets its `write` record (only SIGKILL can come between them; the
    ledger is the truth for writes). Waiting for the lock stays interruptible."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    return now


class Copy:
    """One running copy: its identity, its records, its fence deadline and its ledger."""

    def __init__(self, env: dict[str, str]) -> None:
        self.site = env.get("HARMONY_SITE", "?")
        self.workload = env.get("HARMONY_WORKLOAD", "?")
        self.pid = os.getpid()
        raw_token = env.get(TOKEN_ENV, "")
        try:
            self.token = int(raw_token) if raw_token else None
        except ValueError:
            raise _UsageError(f"{TOKEN_ENV} must be an integer, got {raw_token!r}") from None
        self.deadline_file = Path(env[DEADLINE_ENV]) if env.get(DEADLINE_ENV) else None
        self.records_fd: int | None = None
        if env.get(RECORDS_ENV):
            try:
                self.records_fd = open_records(env[RECORDS_ENV])
            except OSError as e:
                raise _UsageError(f"{RECORDS_ENV}={env[RECORDS_ENV]}: cannot open: {e}") from e
        self.ledger = env.get(LEDGER_ENV) or None
        self.guard: TokenGuard | None = None
        self.ticks = 0
        self.writes = 0

    def record(self, kind: Kind, mono: float | None = None, detail: str = "") -> None:
        if self.records_fd is None:
            return
        now = time.monotonic() if mono is None else mono
        append_record(
            self.records_fd,
            Record(
                kind=kind,
                site=self.site,
                workload=self.workload,
                pid=self.pid,
                mono=now,
                wall=time.time(),
                token=self.token,
                detail=detail,
            ),
        )

    def check(self) -> float:
        """The moment this copy may act at; raises `_Fenced` once its deadline has passed.

        `harmony.guard.deadline_passed`, with the file read on both sides of the clock: the
        read before catches a freeze between read and clock; the read after catches a file
        released or deleted while the clock was read (so no record is later than a change).
        """
        if self.deadline_file is None:
            return time.monotonic()
        before = read_deadline(self.deadline_file)
        now = time.monotonic()
        after = read_deadline(self.deadline_file)
        if before is None or after is None:
            raise _Fenced(now, _describe_missing(self.deadline_file))
        deadline = min(before, after)
        if now >= deadline:
            raise _Fenced(now, f"deadline {deadline:.6f} passed (now {now:.6f})")
        return now

    def open_ledger(self) -> None:
        if self.ledger is None:
            return
        if self.token is None:
            # A copy without a lease (another strategy) has nothing to fence with.
            print(f"{LEDGER_ENV} set but no {TOKEN_ENV}: not writing the ledger", file=sys.stderr)
            return
        # A short wait for the lock: SIGTERM is held back while a write waits (see `write`).
        # One guarded resource per workload: each workload's lease has its own tokens (the
        # revisions of one stream interleave across workloads, so they compare only within one).
        resource = f"{LEDGER_RESOURCE}/{self.workload}"
        self.guard = TokenGuard(self.ledger, resource, timeout=5.0)

    def claim(self) -> tuple[float, int | None]:
        """Check the deadline and, with a ledger, claim it for our token (`TokenGuard.claim`):
        a stale copy's write that commits after our start is then refused. Returns the start's
        moment (under the ledger's lock: every later commit of a lower token is refused) and,
        if our own token is already stale, the highest token the ledger has seen."""
        now = self.check()
        if self.guard is None or self.token is None:
            return now, None
        try:
            return self.guard.write(self.token, lambda _conn: _hold_sigterm(self.check())), None
        except StaleToken as e:  # stale from birth: keep going, every write will say so
            return now, e.highest
        except GuardBusy as e:
            print(f"ledger claim skipped: {e}", file=sys.stderr, flush=True)
            return now, None
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})

    def write(self, guard: TokenGuard, token: int) -> None:
        """One transfer through the guard; records `write` or `write-rejected`."""
        now = self.check()
        amount = self.writes + 1

        def insert(conn: sqlite3.Connection) -> tuple[int, float]:
            at = _hold_sigterm(self.check())  # under the write lock: the row's moment
            conn.execute(LEDGER_SCHEMA)
            cur = conn.execute(
                "INSERT INTO transfers (site, token, pid, mono, amount) VALUES (?, ?, ?, ?, ?)",
                (self.site, token, self.pid, at, amount),
            )
            return int(cur.lastrowid or 0), at

        try:
            row_id, at = guard.write(token, insert)
            self.writes += 1
            self.record("write", at, detail=str(row_id))
        except StaleToken as e:
            self.record("write-rejected", now, detail=str(e.highest))
        except GuardBusy as e:
            print(f"ledger write skipped: {e}", file=sys.stderr, flush=True)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})

    def say(self, n: int) -> None:
        shown = "-" if self.token is None else self.token
        print(f"{self.workload} serving on {self.site} (token {shown}) #{n}", flush=True)

    def run(self, tick: float, write_every: int) -> int:
        try:
            self.open_ledger()
            now, stale = self.claim()
            self.record("start", now, detail=f"pid {self.pid}")
            if stale is not None:
                self.record("write-rejected", now, detail=str(stale))
            self.say(0)
            lines, last_line, next_tick = 1, now, now
            while True:
                next_tick += tick
                delay = next_tick - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_tick = time.monotonic()  # late (frozen, loaded): no burst of ticks
                now = self.check()
                self.record("tick", now)
                self.ticks += 1
                if now - last_line >= 1.0:
                    self.say(lines)
                    lines, last_line = lines + 1, now
                due = self.ticks % write_every == 0
                if due and self.guard is not None and self.token is not None:
                    self.write(self.guard, self.token)
        except _Fenced as f:
            self.record("self-fenced", f.now, detail=f.detail)
            self.record("stop", detail="self-fenced")
            print(f"{self.workload} on {self.site}: fenced itself: {f.detail}", flush=True)
            return SELF_FENCED_EXIT
        except GuardError as e:
            self.record("stop", detail=f"ledger error: {e}")
            print(f"{self.workload} on {self.site}: ledger error: {e}", file=sys.stderr)
            return EXIT_LEDGER


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m harmony.sim.example_workload")
    parser.add_argument("--tick", type=_positive_float, default=0.05, help="seconds per tick")
    parser.add_argument(
        "--write-every", type=_positive_int, default=4, help="ticks per ledger write"
    )
    args = parser.parse_args(argv)
    try:
        copy = Copy(dict(os.environ))
    except _UsageError as e:
        print(f"example workload: {e}", file=sys.stderr)
        sys.exit(EXIT_USAGE)

    def on_term(_sig: int, _frame: FrameType | None) -> None:
        # Exit from the handler itself: a flag would wait out the current sleep (PEP 475).
        copy.record("stop", detail="SIGTERM")
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    try:
        code = copy.run(args.tick, args.write_every)
    finally:
        print(f"{copy.workload} on {copy.site}: stopping", flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
