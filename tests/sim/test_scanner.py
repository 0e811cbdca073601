"""The process scanner and the ground-truth checker on REAL processes.

* a containment process that writes no records, seen by the scanner, counts as active; while
  SIGSTOPped it does not; its exit is seen through its pidfd; the tether and hooks are not
  the copy;
* the planted violation, for real: two recording copies (tokens 1 and 2) overlap for over a
  second while a journal claims the first stopped before the second started; the checker
  reports the overlap, the journal-only checker does not;
* what a scan costs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from support.waiting import wait_until

from harmony.actors.drivers.containment import CONTAINMENT_ENV, containment_id
from harmony.actors.journal import JournalEvent
from harmony.sim import example_workload
from harmony.sim.checks import JOURNAL_ONLY, evaluate
from harmony.sim.history import Interval
from harmony.sim.records import LEDGER_ENV, RECORDS_ENV, Record, read_records
from harmony.sim.scanner import Exit, Proc, Scan, Scanner, read_scan_lines
from harmony.sim.truth import build_truth
from harmony.sim.truthfiles import truth_files

from .test_checks import SCENARIO

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
RECORDER = (
    # The example workload once it records (helper B's branch); until then a minimal one.
    [sys.executable, "-m", "harmony.sim.example_workload"]
    if hasattr(example_workload, "read_ledger")
    else [sys.executable, str(Path(__file__).with_name("recorder.py"))]
)


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start processes; every one is killed (and resumed, if stopped) at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            for sig in (signal.SIGKILL, signal.SIGCONT):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, sig)
        p.wait(10)


def start(
    procs: list[subprocess.Popen[bytes]], argv: list[str], **env: str
) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(
        argv,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs.append(p)
    return p


def states(path: Path, cid: str, pid: int) -> list[tuple[float, str]]:
    """(scan time, state) of every scan of `path` that saw `pid` in `cid`."""
    out = []
    for line in read_scan_lines(path) if path.exists() else []:
        if isinstance(line, Scan):
            out += [(line.t0, s) for p, s in line.seen.get(cid, []) if p == pid]
    return out


def covered(intervals: list[Interval], t: float) -> bool:
    return any(i.start <= t < (i.end if i.end is not None else float("inf")) for i in intervals)


def test_a_scanned_process_is_active_unless_stopped(
    tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    cid = containment_id(tmp_path / "a", "a", "w")
    path = tmp_path / "scans.jsonl"
    with Scanner(path, {("a", "w"): cid}, period=0.05) as scanner:
        copy = start(spawn, SLEEPER, **{CONTAINMENT_ENV: cid})
        # The agent's own helpers carry the marker too, but are not the copy.
        start(spawn, [*SLEEPER, "-m harmony.actors.drivers.tether_main"], **{CONTAINMENT_ENV: cid})
        start(spawn, SLEEPER, **{CONTAINMENT_ENV: cid, "HARMONY_HOOK": "probe"})
        wait_until(lambda: len(states(path, cid, copy.pid)) >= 3, 20, message="copy scanned")
        running_at = time.monotonic()
        os.kill(copy.pid, signal.SIGSTOP)
        frozen = lambda: [t for t, s in states(path, cid, copy.pid) if s == "T"]  # noqa: E731
        wait_until(lambda: len(frozen()) >= 5, 20, message="scans saw it stopped")
        mid_freeze = frozen()[2]
        os.kill(copy.pid, signal.SIGCONT)
        thawed = lambda: [t for t, s in states(path, cid, copy.pid) if s != "T" and t > mid_freeze]  # noqa: E731
        wait_until(lambda: len(thawed()) >= 2, 20, message="scans saw it running again")
        killed_at = time.monotonic()
        copy.kill()
        copy.wait(10)
        dead_at = time.monotonic()
        exits = lambda: [x for x in read_scan_lines(path) if isinstance(x, Exit)]  # noqa: E731
        wait_until(lambda: any(x.pid == copy.pid for x in exits()), 20, message="exit seen")
    assert scanner.scans > 10 and scanner.cpu_seconds > 0
    lines = read_scan_lines(path)
    roles = {x.pid: x.role for x in lines if isinstance(x, Proc)}
    assert sorted(roles.values()) == ["copy", "harmony", "hook:probe"]
    intervals = build_truth([], lines, [], time.monotonic()).intervals["w"]
    assert {p.split()[1] for i in intervals for p in i.procs} == {str(copy.pid)}
    assert covered(intervals, running_at)
    assert not covered(intervals, mid_freeze)  # SIGSTOPped: not active
    assert covered(intervals, thawed()[0])
    end = max(i.end or float("inf") for i in intervals)
    assert killed_at < end <= dead_at + 1.0, (killed_at, end, dead_at)
    assert "exit seen" in intervals[-1].ended_by


def test_real_copies_overlap_that_the_journal_hides_is_reported(
    tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    """The planted violation with real processes: a's copy keeps running after the journal
    says it stopped, and b's copy starts."""
    (tmp_path / "records").mkdir()
    cids = {(s, "w"): containment_id(tmp_path / s, s, "w") for s in ("a", "b", "c")}

    def env(site: str, token: int) -> dict[str, str]:
        return {
            "HARMONY_SITE": site,
            "HARMONY_WORKLOAD": "w",
            "HARMONY_FENCING_TOKEN": str(token),
            RECORDS_ENV: str(tmp_path / "records" / f"{site}.w.jsonl"),
            LEDGER_ENV: str(tmp_path / "ledger.db"),
            CONTAINMENT_ENV: cids[(site, "w")],
        }

    def ticks(site: str) -> list[Record]:
        files = sorted((tmp_path / "records").glob("*.jsonl"))
        return [r for r in read_records(files) if r.site == site and r.kind == "tick"]

    def journal(t: float, site: str, kind: str, token: int) -> JournalEvent:
        return JournalEvent(
            site=site, workload="w", kind=kind, reason="", mono=t, wall=t, token=token
        )

    with Scanner(tmp_path / "scans.jsonl", cids, period=0.1):
        events = [journal(time.monotonic(), "a", "start", 1)]
        a = start(spawn, RECORDER, **env("a", 1))
        wait_until(lambda: len(ticks("a")) >= 2, 30, message="a's copy ticking")
        events.append(journal(time.monotonic(), "a", "driver-stopped", 1))  # the journal lies
        events.append(journal(time.monotonic() + 0.001, "b", "start", 2))
        b = start(spawn, RECORDER, **env("b", 2))
        wait_until(lambda: ticks("b"), 30, message="b's copy ticking")
        b_first = ticks("b")[0].mono
        wait_until(lambda: ticks("a")[-1].mono > b_first + 1.0, 30, message="a still ticking")
        for p in (a, b):
            p.terminate()
            assert p.wait(20) in (0, -signal.SIGTERM)
    horizon = time.monotonic()
    checked = evaluate(events, SCENARIO, horizon, truth_files(tmp_path), require_truth=True)
    assert checked.sources == {"w": "scans + records"}
    (v,) = [v for v in checked.violations if v.checker == "absolute-consistency"]
    overlap = float(v.message.split(" for ")[1].split(" s ")[0])
    assert overlap >= 1.0 and v.sites == ("a", "b")
    assert "journal says a's copy (token 1) stopped at" in v.explain
    assert "(driver-stopped)" in v.explain
    # With the example workload's ledger: a's writes after b's start were refused.
    assert not [v for v in checked.violations if v.checker == "stale-write"]
    journal_only = evaluate(events, SCENARIO, horizon)
    assert journal_only.sources == {"w": JOURNAL_ONLY}
    assert not [v for v in journal_only.violations if v.checker == "absolute-consistency"]


def test_a_scan_is_cheap(tmp_path: Path, spawn: list[subprocess.Popen[bytes]]) -> None:
    """5 sites x 2 workloads, two processes in each containment: CPU per scan, printed."""
    cids = {(s, w): containment_id(tmp_path / s, s, w) for s in "abcde" for w in ("x", "y")}
    for cid in cids.values():
        for _ in range(2):
            start(spawn, ["sleep", "120"], **{CONTAINMENT_ENV: cid})
    path = tmp_path / "scans.jsonl"
    with Scanner(path, cids, period=0.1) as scanner:
        wait_until(lambda: scanner.scans >= 30, 60, message="30 scans")
    per_scan = scanner.cpu_seconds / scanner.scans
    machine = len(psutil.pids())
    print(f"scanner: {per_scan * 1000:.2f} ms CPU per scan, {machine} processes on the machine")
    seen = [x for x in read_scan_lines(path) if isinstance(x, Scan)][-1].seen
    assert sum(len(v) for v in seen.values()) == 20
    assert per_scan < 0.05  # 10 scans a second: under half a core even on a loaded host
