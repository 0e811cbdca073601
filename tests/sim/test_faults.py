"""Fault machinery on real processes and a real mount: freeze/thaw stop and continue
exactly the processes they name (states read from /proc), fill-disk makes writes fail
with ENOSPC and the cleanup unmounts."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.waiting import wait_until

from harmony.actors.drivers.containment import CONTAINMENT_ENV
from harmony.sim import disk
from harmony.sim.freeze import freeze, proc_state, thaw
from harmony.sim.runner import under_ci

SLEEP = [sys.executable, "-c", "import time; time.sleep(300)"]
SH_SLEEP = f"{sys.executable} -c 'import time; time.sleep(300)'"
CID = f"a.test{os.getpid()}.ledger"


@pytest.fixture
def site() -> Iterator[dict[str, int]]:
    """A fake site: an agent group (leader + child), a server, a tether-like harmony process
    and a workload with a grandchild in a session of its own, both marked."""
    env = {**os.environ, CONTAINMENT_ENV: CID}
    procs = {
        "agent": subprocess.Popen(
            ["sh", "-c", f"{SH_SLEEP} & wait"],
            start_new_session=True,
        ),
        "server": subprocess.Popen(SLEEP, start_new_session=True),
        "tether": subprocess.Popen(
            [*SLEEP, "harmony.actors.drivers.tether_main"], env=env, start_new_session=True
        ),
        "workload": subprocess.Popen(
            ["sh", "-c", f"setsid {SH_SLEEP} & wait"],
            env=env,
            start_new_session=True,
        ),
    }
    try:
        pids = {k: p.pid for k, p in procs.items()}
        wait_until(lambda: len(_children(pids["workload"])) == 1, 10, message="no grandchild")
        wait_until(lambda: len(_children(pids["agent"])) == 1, 10, message="no agent child")
        pids["grandchild"] = _children(pids["workload"])[0]
        pids["agent-child"] = _children(pids["agent"])[0]
        yield pids
    finally:
        for p in procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGCONT)
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
        for pid in _marked_leftovers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = Path(f"/proc/{d}/stat").read_bytes()
                if int(stat[stat.rfind(b")") + 2 :].split()[1]) == pid:
                    out.append(int(d))
    return out


def _marked_leftovers() -> list[int]:
    from harmony.actors.drivers.containment import scan_marked

    return [p.pid for p in scan_marked().get(CID, [])]


def stopped(pids: dict[str, int]) -> set[str]:
    return {k for k, pid in pids.items() if proc_state(pid) in ("T", "t")}


def test_freeze_agent_and_tether_leaves_the_workload_running(site: dict[str, int]) -> None:
    frozen = freeze("agent+tether", site["agent"], [site["server"]], [CID])
    wait_until(lambda: stopped(site) == {"agent", "agent-child", "tether"}, 10)
    thaw(frozen, [CID])
    wait_until(lambda: not stopped(site), 10, message="thaw left something stopped")


def test_freeze_site_stops_every_process_of_it(site: dict[str, int]) -> None:
    frozen = freeze("site", site["agent"], [site["server"]], [CID])
    assert frozen.what == "site"
    wait_until(lambda: stopped(site) == set(site), 10, message="not every process stopped")
    thaw(frozen, [CID])
    wait_until(lambda: not stopped(site), 10, message="thaw left something stopped")


def test_freeze_agent_is_todays_pause(site: dict[str, int]) -> None:
    frozen = freeze("agent", site["agent"], [site["server"]], [CID])
    wait_until(lambda: stopped(site) == {"agent", "agent-child"}, 10)
    thaw(frozen, [CID])
    wait_until(lambda: not stopped(site), 10)


# ----------------------------------------------------------------------------- the disk
@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[Path]:
    reason = disk.mount_unavailable()
    if reason:
        if under_ci():
            pytest.fail(f"CI=true and no tmpfs mount: {reason}")
        pytest.skip(reason)
    path = tmp_path / "data"
    disk.mount_tmpfs(path, "4M")
    try:
        yield path
    finally:
        disk.unmount(path)
        assert not disk.is_mount(path)


def test_fill_makes_writes_fail_with_enospc_and_free_undoes_it(mounted: Path) -> None:
    assert disk.is_mount(mounted)
    journal = mounted / "journal.jsonl"
    journal.write_text("x" * 4096)  # a whole page: no slack left in it after the fill
    written = disk.fill(mounted)
    assert 3 << 20 < written <= 4 << 20
    with pytest.raises(OSError) as e, open(mounted / "new", "w") as f:
        f.write("y" * 100)
        f.flush()
    assert e.value.errno == errno.ENOSPC
    with pytest.raises(OSError) as e, open(journal, "a") as f:
        f.write("another event\n")
        f.flush()
    assert e.value.errno == errno.ENOSPC
    disk.free(mounted)
    with open(journal, "a") as f:
        f.write("another event\n")


def test_unmount_works_while_a_file_is_still_open(tmp_path: Path) -> None:
    reason = disk.mount_unavailable()
    if reason:
        pytest.skip(reason)
    path = tmp_path / "busy"
    disk.mount_tmpfs(path, "4M")
    with open(path / "held", "w"):
        disk.unmount(path)  # lazily: the mount must never outlive the run
        assert not disk.is_mount(path)
