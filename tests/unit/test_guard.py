"""The fencing-token guard: stale tokens are refused, the check holds under the write lock,
and several real processes writing with interleaved tokens commit in token order."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.waiting import wait_until

from harmony.actors.drivers.tether import TETHER_FENCED
from harmony.guard import SELF_FENCED_EXIT, GuardBusy, GuardError, StaleToken, TokenGuard


def insert(value: str) -> object:
    def fn(conn: sqlite3.Connection) -> int:
        conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, value TEXT)")
        return int(conn.execute("INSERT INTO t (value) VALUES (?)", (value,)).lastrowid or 0)

    return fn


def values(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [v for (v,) in conn.execute("SELECT value FROM t ORDER BY id")]
    finally:
        conn.close()


@pytest.fixture
def guard(tmp_path: Path) -> Iterator[TokenGuard]:
    with TokenGuard(tmp_path / "g.db", "ledger") as g:
        yield g


def test_equal_and_higher_tokens_commit_lower_ones_are_refused(guard: TokenGuard) -> None:
    assert guard.highest() is None
    guard.write(5, insert("a"))
    guard.write(5, insert("b"))  # one holder writes many times
    called: list[bool] = []

    def spy(conn: sqlite3.Connection) -> None:
        called.append(True)

    guard.write(7, insert("c"))
    with pytest.raises(StaleToken) as refused:
        guard.write(5, spy)
    assert (refused.value.token, refused.value.highest) == (5, 7)
    assert "stale fencing token 5" in str(refused.value) and "committed 7" in str(refused.value)
    assert called == []  # the stale writer's fn never ran
    assert guard.highest() == 7
    assert values(guard.db_path) == ["a", "b", "c"]


def test_a_claim_commits_only_the_token(guard: TokenGuard) -> None:
    guard.write(5, insert("a"))
    guard.claim(7)
    assert guard.highest() == 7
    assert values(guard.db_path) == ["a"]
    with pytest.raises(StaleToken):
        guard.write(6, insert("b"))
    with pytest.raises(StaleToken):
        guard.claim(6)


def test_a_failing_write_rolls_back_data_and_token(guard: TokenGuard) -> None:
    guard.write(3, insert("kept"))

    def boom(conn: sqlite3.Connection) -> None:
        insert("lost")(conn)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        guard.write(9, boom)
    assert guard.highest() == 3
    assert values(guard.db_path) == ["kept"]
    guard.write(4, insert("after"))  # the lock was released
    assert values(guard.db_path) == ["kept", "after"]


def test_resources_keep_their_own_highest_and_the_database_is_in_wal_mode(
    tmp_path: Path,
) -> None:
    db = tmp_path / "g.db"
    with TokenGuard(db, "a") as a, TokenGuard(db, "b") as b:
        a.write(10, insert("a10"))
        b.write(2, insert("b2"))
        assert (a.highest(), b.highest()) == (10, 2)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


@pytest.mark.parametrize("token", [-1, True, "5", 2.0, 2**63])
def test_a_bad_token_is_a_clear_error(guard: TokenGuard, token: object) -> None:
    with pytest.raises(GuardError, match="non-negative int64"):
        guard.write(token, insert("x"))  # type: ignore[arg-type]


def test_bad_databases_and_arguments_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(GuardError, match=r"cannot open guard database .*missing/g\.db"):
        TokenGuard(tmp_path / "missing" / "g.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database, not even close" * 100)
    with pytest.raises(GuardError, match=r"junk\.db: cannot set up"):
        TokenGuard(junk)
    with pytest.raises(GuardError, match="resource"):
        TokenGuard(tmp_path / "g.db", "")
    with pytest.raises(GuardError, match="timeout"):
        TokenGuard(tmp_path / "g.db", timeout=0)


def test_a_locked_database_gives_guard_busy_within_the_timeout(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    guard = TokenGuard(db, "ledger", timeout=0.3)
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        began = time.monotonic()
        with pytest.raises(GuardBusy, match=r"g\.db: resource 'ledger'.*stayed locked for 0.3 s"):
            guard.write(1, insert("x"))
        assert time.monotonic() - began < 5.0
        other.execute("ROLLBACK")
        guard.write(1, insert("x"))
        assert values(db) == ["x"]
    finally:
        other.close()
        guard.close()


def test_the_check_is_made_under_the_write_lock(tmp_path: Path) -> None:
    """A stale writer waiting for the lock while the next holder commits is refused: its
    check reads the state it would commit on, not the one it saw before the lock."""
    db = tmp_path / "g.db"
    result: list[object] = []
    first_done, locked, writing = threading.Event(), threading.Event(), threading.Event()

    def stale_writer() -> None:
        with TokenGuard(db, "ledger", timeout=30.0) as g:
            g.write(5, insert("5-first"))
            first_done.set()
            locked.wait(30.0)
            writing.set()
            try:
                g.write(5, insert("5-late"))
                result.append("committed")
            except StaleToken as e:
                result.append(e.highest)

    other = sqlite3.connect(db, isolation_level=None, timeout=30.0)
    thread = threading.Thread(target=stale_writer)
    try:
        thread.start()
        assert first_done.wait(30.0), "the first write did not commit"
        other.execute("BEGIN IMMEDIATE")  # the next holder takes the lock first
        locked.set()
        assert writing.wait(30.0)
        # The stale writer must wait for our lock (a negative check: bounded).
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            assert not result, f"the stale writer did not wait for the write lock: {result}"
            time.sleep(0.01)
        other.execute("UPDATE harmony_fence SET highest = 7 WHERE resource = 'ledger'")
        other.execute("INSERT INTO t (value) VALUES ('7')")
        other.execute("COMMIT")
        thread.join(30.0)
        assert result == [7]
        assert values(db) == ["5-first", "7"]
    finally:
        locked.set()
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()
        thread.join(30.0)


def test_the_self_fenced_exit_status_is_the_tethers() -> None:
    # The process driver takes TETHER_FENCED as "fenced", never as a crash to restart.
    assert SELF_FENCED_EXIT == TETHER_FENCED


WRITER = """
import json, os, sqlite3, sys, time
from pathlib import Path
from harmony.guard import StaleToken, TokenGuard

db, go, index, n, rounds, per = sys.argv[1], Path(sys.argv[2]), *map(int, sys.argv[3:])
guard = TokenGuard(db, "ledger", timeout=30.0)
print(json.dumps({"ready": True}), flush=True)
while not go.exists():
    time.sleep(0.005)

def attempt(token, seq):
    def fn(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                     " pid INTEGER, token INTEGER, seq INTEGER)")
        return conn.execute("INSERT INTO t (pid, token, seq) VALUES (?, ?, ?)",
                            (os.getpid(), token, seq)).lastrowid
    try:
        row = guard.write(token, fn)
        out = {"token": token, "seq": seq, "ok": True, "id": row}
    except StaleToken as e:
        out = {"token": token, "seq": seq, "ok": False, "highest": e.highest}
    print(json.dumps(out), flush=True)
    time.sleep(0.01)  # pacing, so the writers overlap instead of one finishing first

seq = 0
for r in range(rounds):
    for _ in range(per):
        attempt(r * n + index, seq)
        seq += 1
attempt(index, seq)  # always stale by now: the highest token has committed
"""


def test_concurrent_processes_commit_in_token_order(tmp_path: Path) -> None:
    db, go = tmp_path / "g.db", tmp_path / "go"
    n, rounds, per = 4, 6, 5
    outs = [tmp_path / f"w{i}.out" for i in range(n)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, out in enumerate(outs):
            with out.open("wb") as f:
                argv = [sys.executable, "-c", WRITER, str(db), str(go), str(i), str(n)]
                argv += [str(rounds), str(per)]
                procs.append(subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT))
        wait_until(
            lambda: all('"ready"' in o.read_text() for o in outs),
            60.0,
            message=lambda: "writers ready: " + " | ".join(o.read_text()[-300:] for o in outs),
        )
        go.touch()  # all start together: their tokens interleave
        for p in procs:
            assert p.wait(120.0) == 0, [o.read_text()[-500:] for o in outs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    reports = [
        json.loads(line)
        for o in outs
        for line in o.read_text().splitlines()
        if line.startswith("{") and '"ready"' not in line
    ]
    assert len(reports) == n * (rounds * per + 1)
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT id, pid, token FROM t ORDER BY id").fetchall()
        (highest,) = conn.execute("SELECT highest FROM harmony_fence").fetchone()
    finally:
        conn.close()
    tokens = [token for _, _, token in rows]
    assert tokens == sorted(tokens), f"a committed token went down: {tokens}"
    assert highest == tokens[-1] == (rounds - 1) * n + (n - 1)
    committed = {r["id"]: r["token"] for r in reports if r["ok"]}
    assert committed == {row_id: token for row_id, _, token in rows}  # every commit reported
    rejected = [r for r in reports if not r["ok"]]
    assert len(rejected) >= n  # at least every final stale write
    assert all(r["highest"] > r["token"] for r in rejected)
    assert all(r["highest"] in set(tokens) for r in rejected)  # a token that was committed
    # (Which writers get to commit depends on scheduling: a writer that runs a round ahead
    # may legitimately make every other one stale. The order and the refusals are the point.)
