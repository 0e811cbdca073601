"""A journal that cannot be written never stops the agent: `record` does not raise or wait,
the event still reaches the mesh, and stderr says so once (then counts, then the recovery)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from nats.aio.msg import Msg
from support.nats_servers import Node
from support.waiting import wait_until

from harmony.actors.clock import SystemClock
from harmony.actors.journal import Journal, JournalEvent, read_journal
from harmony.mesh import subjects, wire
from harmony.mesh.connection import MeshConnection

SLOW = 0.5
"""No `record` may take this long: it writes one line to the page cache, nothing more."""


@pytest.fixture
def conn(make_nats_server: Callable[..., Node]) -> Iterator[MeshConnection]:
    node = make_nats_server()
    c = MeshConnection([node.client_url], "journal-test").start()
    try:
        c.wait_connected(10)
        yield c
    finally:
        c.close()


def listen(conn: MeshConnection, site: str) -> list[JournalEvent]:
    got: list[JournalEvent] = []

    def on_event(msg: Msg) -> None:
        ev = wire.decode(msg.data)
        assert isinstance(ev, JournalEvent)
        got.append(ev)

    sub = conn.subscribe(subjects.events("m", site), on_event)
    assert sub.ready.wait(10)
    return got


def record_many(journal: Journal, n: int) -> float:
    """Record n events; return the slowest call's duration."""
    slowest = 0.0
    for i in range(n):
        t = time.monotonic()
        journal.record("w", "fence", f"step {i}", token=i + 1)
        slowest = max(slowest, time.monotonic() - t)
    return slowest


def test_a_full_device_never_raises_and_events_still_reach_the_mesh(
    conn: MeshConnection, capfd: pytest.CaptureFixture[str]
) -> None:
    """/dev/full: every write fails with ENOSPC (and fsync with EINVAL)."""
    got = listen(conn, "a")
    journal = Journal(Path("/dev/full"), SystemClock(), "a", "m", "inc", conn, report_every=3600)
    try:
        slowest = record_many(journal, 300)
        assert slowest < SLOW, f"a record took {slowest:.3f} s"
        wait_until(lambda: len(got) == 300, 10, message=lambda: f"{len(got)} of 300 published")
        assert [e.reason for e in got] == [f"step {i}" for i in range(300)]
    finally:
        journal.close()
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "journal /dev/full" in line]
    assert any("write failed: No space left on device (ENOSPC)" in line for line in lines), err
    assert len(lines) <= 3, f"stderr flooded:\n{err}"  # write ENOSPC, fsync EINVAL, at most
    assert journal.failures.total >= 300


def test_failures_are_counted_now_and_then_not_every_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A descriptor that was replaced under the journal (EBADF): first failure at once, then a
    count once per `report_every`, then a line when writes work again."""
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, SystemClock(), "a", "m", "inc", report_every=0.2)
    try:
        journal.record("", "before", "written")
        good_fd = os.dup(journal._fd)
        os.close(journal._fd)  # a closed descriptor: EBADF from now on
        record_many(journal, 50)
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:  # the count is reported on a failure after 0.2 s
            journal.record("", "during", "lost")
        journal.record("", "during", "lost")
        os.dup2(good_fd, journal._fd)  # the descriptor works again
        os.close(good_fd)
        journal.record("", "after", "written again")
    finally:
        journal.close()
    err = [line for line in capfd.readouterr().err.splitlines() if "journal" in line]
    # The first failure may be the background fsync of the records before it (it can reach
    # the closed descriptor before the next write does): either way, EBADF at once.
    assert re.search(r"(write|fsync) failed: Bad file descriptor \(EBADF\)", err[0]), err
    assert any("write failed: Bad file descriptor (EBADF)" in line for line in err[:2]), err
    counted = re.compile(r"\d+ x write EBADF.* more since the last report")
    assert any(counted.search(line) for line in err[1:-1]), err
    assert "writing works again after" in err[-1]
    assert len(err) < 10, err
    assert [e.kind for e in read_journal(path)] == ["before", "after"]


def _mount_tmpfs(where: Path, size: str) -> str | None:
    """Mount a tiny tmpfs; the reason when this machine does not let us."""
    where.mkdir()
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    return None if done.returncode == 0 else f"mount failed: {done.stderr.strip()}"


def test_a_full_filesystem_then_space_again(
    tmp_path: Path, conn: MeshConnection, capfd: pytest.CaptureFixture[str]
) -> None:
    """A real full filesystem (a 64 KiB tmpfs): records go on, reach the mesh, and the
    journal writes again once there is space."""
    mnt = tmp_path / "small"
    why = _mount_tmpfs(mnt, "64k")
    if why is not None:
        pytest.skip(f"{why}; the /dev/full test covers ENOSPC")
    try:
        got = listen(conn, "b")
        journal = Journal(mnt / "journal.jsonl", SystemClock(), "b", "m", "inc", conn)
        try:
            journal.record("", "first", "fits")
            filler = mnt / "filler"
            with contextlib.suppress(OSError), open(filler, "wb") as f:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
            slowest = record_many(journal, 200)
            assert slowest < SLOW, f"a record took {slowest:.3f} s"
            assert journal.failures.total > 0, "the tmpfs never filled"
            filler.unlink()
            journal.record("", "last", "space again")
            wait_until(lambda: len(got) == 202, 10, message=lambda: f"{len(got)} of 202 published")
        finally:
            journal.close()
        kinds = [e.kind for e in read_journal(mnt / "journal.jsonl")]
        assert kinds[0] == "first" and kinds[-1] == "last"
        assert len(kinds) < 202  # lines were lost to the full disk, and nothing broke
        err = capfd.readouterr().err.splitlines()
        # "No space left on device", or "short write, 57 of 177 bytes" when a line half fit
        assert "write failed:" in err[0] and "(ENOSPC)" in err[0], err
        assert "writing works again after" in err[-1], err
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
