"""The example workload on real processes: its records, its self-fencing and its guarded ledger.

The records are the simulator's ground truth, so these tests assert from them (and from the
ledger), never from what the workload prints.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.waiting import wait_until

from harmony.guard import DEADLINE_ENV, RELEASED, SELF_FENCED_EXIT, TOKEN_ENV, write_deadline
from harmony.sim.example_workload import LEDGER_SCHEMA, read_ledger, stale_commits
from harmony.sim.records import LEDGER_ENV, RECORDS_ENV, Record, read_records

WORKLOAD = [sys.executable, "-m", "harmony.sim.example_workload"]
ACTIVE = ("start", "tick", "write")


@dataclass
class Copy:
    proc: subprocess.Popen[bytes]
    records: Path
    out: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def recs(self, kind: str | None = None) -> list[Record]:
        mine = [r for r in read_records([self.records]) if r.pid == self.pid]
        return [r for r in mine if kind is None or r.kind == kind]

    def count(self, kind: str) -> int:
        return len(self.recs(kind))

    def tail(self) -> str:
        return f"pid {self.pid} output: {self.out.read_text()[-800:]!r}"

    def wait_exit(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"did not exit within {timeout} s; {self.tail()}") from None


Start = Callable[..., Copy]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """Start example-workload copies; every one is killed at teardown, also on failure."""
    copies: list[Copy] = []

    def _start(
        site: str,
        *,
        token: int | None = None,
        deadline: Path | None = None,
        ledger: Path | None = None,
        records: Path | None = None,
        args: tuple[str, ...] = (),
    ) -> Copy:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HARMONY_")}
        env.update(HARMONY_SITE=site, HARMONY_WORKLOAD="ledger")
        records = records or tmp_path / f"{site}.records"
        env[RECORDS_ENV] = str(records)
        if token is not None:
            env[TOKEN_ENV] = str(token)
        if deadline is not None:
            env[DEADLINE_ENV] = str(deadline)
        if ledger is not None:
            env[LEDGER_ENV] = str(ledger)
        out = tmp_path / f"{site}-{len(copies)}.out"
        with out.open("wb") as f:
            proc = subprocess.Popen([*WORKLOAD, *args], stdout=f, stderr=subprocess.STDOUT, env=env)
        copy = Copy(proc, records, out)
        copies.append(copy)
        return copy

    try:
        yield _start
    finally:
        for c in copies:
            if c.proc.poll() is None:
                c.proc.kill()  # SIGKILL also ends a stopped process
            c.proc.wait(30.0)


def frozen(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2] in "Tt"


def test_sigterm_records_stop_and_exits_0(start: Start) -> None:
    c = start("a", token=3)
    wait_until(lambda: c.count("tick") >= 3, 30.0, message=c.tail)
    c.proc.send_signal(signal.SIGTERM)
    assert c.wait_exit() == 0
    recs = c.recs()
    assert recs[0].kind == "start" and recs[0].token == 3 and recs[0].pid == c.pid
    assert recs[-1].kind == "stop" and recs[-1].detail == "SIGTERM"
    out = c.out.read_text()
    assert "ledger serving on a (token 3) #0" in out and "ledger on a: stopping" in out


def test_sigterm_stops_a_copy_that_waits_for_the_ledger_lock(start: Start, tmp_path: Path) -> None:
    """A writer frozen in its transaction holds the ledger's lock; a copy waiting for it still
    stops at once on SIGTERM (well within the guard's 5 s lock timeout)."""
    ledger = tmp_path / "ledger.db"
    c = start("a", token=3, ledger=ledger, args=("--write-every", "1"))
    wait_until(lambda: c.count("write") >= 2, 30.0, message=c.tail)
    holder = sqlite3.connect(ledger, isolation_level=None, timeout=30.0)
    try:
        holder.execute("BEGIN IMMEDIATE")
        # Its ticks stop: it is stuck in a write, waiting for our lock.
        wait_until(lambda: time.monotonic() - c.recs()[-1].mono > 0.5, 10.0, message=c.tail)
        c.proc.send_signal(signal.SIGTERM)
        assert c.wait_exit(timeout=2.5) == 0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert c.recs()[-1].kind == "stop"


def test_a_stale_token_cannot_write_after_a_newer_one(start: Start, tmp_path: Path) -> None:
    """Tokens 5 then 7 on one ledger: once 7 has started (it claims the ledger), every write
    of 5 is refused; a copy started later with 6 never writes at all."""
    ledger, records = tmp_path / "ledger.db", tmp_path / "shared.records"
    old = start("a", token=5, ledger=ledger, records=records, args=("--write-every", "1"))
    wait_until(lambda: old.count("write") >= 3, 30.0, message=old.tail)
    new = start("b", token=7, ledger=ledger, records=records, args=("--write-every", "1"))
    wait_until(lambda: new.count("write") >= 3, 30.0, message=new.tail)
    (new_start,) = new.recs("start")
    wait_until(
        lambda: len([r for r in old.recs("write-rejected") if r.mono > new_start.mono]) >= 3,
        30.0,
        message=old.tail,
    )
    late = start("c", token=6, ledger=ledger, records=records, args=("--write-every", "1"))
    wait_until(lambda: late.count("write-rejected") >= 3, 30.0, message=late.tail)
    for c in (old, new, late):
        c.proc.send_signal(signal.SIGTERM)
    assert (old.wait_exit(), new.wait_exit(), late.wait_exit()) == (0, 0, 0)

    assert all(r.mono < new_start.mono for r in old.recs("write")), "5 wrote after 7 started"
    assert {r.detail for r in old.recs("write-rejected")} == {"7"}  # the highest it was shown
    assert new.count("write-rejected") == 0
    assert [r.kind for r in late.recs()[:2]] == ["start", "write-rejected"]
    assert late.count("write") == 0 and {r.detail for r in late.recs("write-rejected")} == {"7"}
    rows = read_ledger(ledger)
    assert stale_commits(rows) == []
    assert [r.token for r in rows] == sorted(r.token for r in rows)
    assert {r.token for r in rows} == {5, 7}
    assert all(r.mono < new_start.mono for r in rows if r.token == 5)
    # Every committed row is one `write` record of the copy that wrote it, and back.
    copies = (old, new, late)
    written = {int(r.detail): (r.pid, r.token, r.mono) for c in copies for r in c.recs("write")}
    assert written == {r.id: (r.pid, r.token, r.mono) for r in rows}


@pytest.mark.parametrize("change", ["past", "released", "deleted"])
def test_a_copy_fences_itself_when_its_deadline_goes(
    start: Start, tmp_path: Path, change: str
) -> None:
    deadline = tmp_path / "7.deadline"
    write_deadline(deadline, time.monotonic() + 300)
    ledger = tmp_path / "ledger.db"
    c = start("a", token=7, deadline=deadline, ledger=ledger, args=("--write-every", "2"))
    wait_until(lambda: c.count("write") >= 2, 30.0, message=c.tail)
    if change == "past":
        write_deadline(deadline, time.monotonic())
    elif change == "released":
        write_deadline(deadline, RELEASED)
    else:
        deadline.unlink()
    changed = time.monotonic()
    assert c.wait_exit() == SELF_FENCED_EXIT

    recs = c.recs()
    late = [r for r in recs if r.kind in ACTIVE and r.mono >= changed]
    assert late == [], f"acted after its deadline went: {late}"
    (fenced,) = c.recs("self-fenced")
    expected = {"past": "passed", "released": "released", "deleted": "missing"}[change]
    assert expected in fenced.detail
    assert [r.kind for r in recs[-2:]] == ["self-fenced", "stop"]
    assert all(row.mono < changed for row in read_ledger(ledger))
    assert "fenced itself" in c.out.read_text()


def test_a_copy_started_without_a_valid_deadline_never_starts(start: Start, tmp_path: Path) -> None:
    c = start("a", token=7, deadline=tmp_path / "none.deadline", ledger=tmp_path / "l.db")
    assert c.wait_exit() == SELF_FENCED_EXIT
    assert [r.kind for r in c.recs()] == ["self-fenced", "stop"]
    assert read_ledger(tmp_path / "l.db") == []


def test_a_copy_frozen_past_its_deadline_does_not_act_when_resumed(
    start: Start, tmp_path: Path
) -> None:
    """The whole site frozen (a paused VM): the deadline passes while the copy is stopped;
    resumed, it fences itself before any tick or write."""
    deadline = tmp_path / "7.deadline"
    write_deadline(deadline, time.monotonic() + 300)
    ledger = tmp_path / "ledger.db"
    c = start("a", token=7, deadline=deadline, ledger=ledger, args=("--write-every", "1"))
    wait_until(lambda: c.count("write") >= 3, 30.0, message=c.tail)
    os.kill(c.pid, signal.SIGSTOP)
    wait_until(lambda: frozen(c.pid), 10.0, message="the copy is stopped")
    # Its last renewal's deadline now runs out while it is frozen.
    last = time.monotonic() + 0.3
    write_deadline(deadline, last)
    wait_until(lambda: time.monotonic() > last + 0.3, 10.0, message="deadline passed")
    os.kill(c.pid, signal.SIGCONT)
    assert c.wait_exit() == SELF_FENCED_EXIT

    recs = c.recs()
    late = [r for r in recs if r.kind in ACTIVE and r.mono >= last]
    assert late == [], f"acted after its deadline: {late}"
    (fenced,) = c.recs("self-fenced")
    assert fenced.mono >= last + 0.3 and f"deadline {last:.6f} passed" in fenced.detail
    assert all(row.mono < last for row in read_ledger(ledger))
    assert c.count("write") >= 3


def test_records_survive_sigkill_and_a_torn_line_is_skipped(start: Start) -> None:
    c = start("a", token=1)
    wait_until(lambda: c.count("tick") >= 10, 30.0, message=c.tail)
    c.proc.kill()
    assert c.wait_exit() == -signal.SIGKILL
    data = c.records.read_bytes()
    assert data.endswith(b"\n")
    n = len(data.splitlines())
    assert len(read_records([c.records])) == n  # every line a complete record
    assert "stop" not in {r.kind for r in c.recs()}
    with c.records.open("ab") as f:
        f.write(b'{"kind":"tick","site":"a","workload":"led')  # a copy killed mid-line
    assert len(read_records([c.records])) == n


def test_bad_environment_is_a_clear_error() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARMONY_")}
    env[TOKEN_ENV] = "seven"
    done = subprocess.run(WORKLOAD, env=env, capture_output=True, timeout=60, check=False)
    assert done.returncode == 2
    assert b"HARMONY_FENCING_TOKEN must be an integer, got 'seven'" in done.stderr
    done = subprocess.run(
        [*WORKLOAD, "--write-every", "0"], env=env, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 2 and b"must be >= 1" in done.stderr


def test_read_ledger_and_stale_commits_catch_a_planted_stale_write(tmp_path: Path) -> None:
    """The checker's side: a stale row slipped in (here written around the guard) is found."""
    db = tmp_path / "ledger.db"
    assert read_ledger(db) == []  # no file yet
    conn = sqlite3.connect(db)
    try:
        conn.execute(LEDGER_SCHEMA)
        assert read_ledger(db) == []
        for token in (5, 5, 7, 5, 7, 8):
            conn.execute(
                "INSERT INTO transfers (site, token, pid, mono, amount) VALUES ('a', ?, 1, 0, 1)",
                (token,),
            )
        conn.commit()
    finally:
        conn.close()
    rows = read_ledger(db)
    assert [r.token for r in rows] == [5, 5, 7, 5, 7, 8]
    assert [(r.id, r.token) for r in stale_commits(rows)] == [(4, 5)]
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 200)
    with pytest.raises(ValueError, match=r"junk\.db: not a readable ledger"):
        read_ledger(junk)
