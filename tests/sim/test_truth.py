"""Ground truth from records and scans: each rule of `harmony.sim.truth`'s definition."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from support.histories import fault, rec, scans, ticking

from harmony.sim.history import Interval
from harmony.sim.scanner import Exit, Proc
from harmony.sim.truth import LedgerRow, build_truth
from harmony.sim.truthfiles import (
    TruthError,
    TruthFiles,
    load_truth,
    read_ledger_rows,
    truth_files,
)

A, B = "a.0123456789.w", "b.0123456789.w"
CIDS = {A: ("a", "w"), B: ("b", "w")}


def only(intervals: dict[str, list[Interval]], site: str = "a") -> list[Interval]:
    return [i for i in intervals["w"] if i.site == site]


def covered(intervals: Sequence[Interval], t: float) -> bool:
    return any(i.start <= t < (i.end if i.end is not None else float("inf")) for i in intervals)


def proc(pid: int, role: str = "copy", *, born: float | None = None, watched: bool = False) -> Proc:
    return Proc(0.0, A, pid, born, "python -m something", 1, role, watched)


def test_a_recording_copy_is_active_from_its_start_to_its_stop_record() -> None:
    truth = build_truth(ticking("a", 100, 1.0, 5.0, token=1), None, [], 10)
    (i,) = only(truth.intervals)
    assert (i.start, i.end, i.token) == (1.0, 5.0, 1)
    assert i.ended_by == "stop record at +5.000 s" and i.acts == 80
    assert truth.sources == {"w": "records"}


def test_an_act_after_the_end_record_counts() -> None:
    records = [*ticking("a", 100, 1.0, 5.0, token=1, end="self-fenced"), rec(6, "a", "tick", 100)]
    (i,) = only(build_truth(records, None, [], 10).intervals)
    assert i.end == 6


def test_a_killed_copy_without_scans_ends_at_its_last_record() -> None:
    (i,) = only(build_truth(ticking("a", 100, 1.0, 5.0, end=None), None, [], 10).intervals)
    assert i.end == 5.0 and "no scans" in i.ended_by


def test_a_killed_copy_ends_at_the_first_scan_that_no_longer_saw_it() -> None:
    # The records stop at 5.0 (SIGKILL mid-life? a stuck loop?) but the process lived on.
    lines = scans(CIDS, {A: {100: [(0, 7.05, "S")]}}, 0, 10)
    (i,) = only(build_truth(ticking("a", 100, 1.0, 5.0, end=None), lines, [], 10).intervals)
    assert i.end == pytest.approx(7.102) and "gone at the scan at +7.100 s" in i.ended_by
    assert build_truth(ticking("a", 100, 1, 5), lines, [], 10).sources == {"w": "scans + records"}


def test_a_pidfd_exit_is_the_end_and_a_missed_scan_is_not() -> None:
    seen = {A: {100: [(0.5, 3.0, "S"), (3.25, 6.45, "S")]}}  # scans missed it 3.0..3.2
    lines = scans(CIDS, seen, 0, 10, procs=[proc(100, watched=True)], exits=[Exit(6.5, A, 100)])
    (i,) = only(build_truth(ticking("a", 100, 1.0, 5.0, end=None), lines, [], 10).intervals)
    assert i.end == 6.5 and "exit seen at +6.500 s" in i.ended_by
    (j,) = only(build_truth([], lines, [], 10).intervals)  # the same process, not recording
    assert (j.start, j.end, j.acts) == (pytest.approx(0.4), 6.5, None)


def test_a_copy_alive_at_the_last_scan_has_no_known_end() -> None:
    lines = scans(CIDS, {A: {100: "S"}}, 0, 10)
    (i,) = only(build_truth(ticking("a", 100, 1.0, 5.0, end=None), lines, [], 20).intervals)
    assert i.end is None and "alive at the last scan" in i.ended_by


def test_a_process_that_does_not_record_is_active_between_the_scans_around_it() -> None:
    lines = scans(CIDS, {A: {99: [(0.95, 5.05, "S")]}}, 0, 10)
    (i,) = only(build_truth([], lines, [], 10).intervals)
    assert (i.start, i.end) == (pytest.approx(0.9), pytest.approx(5.102))
    born = scans(CIDS, {A: {99: [(0.95, 5.05, "S")]}}, 0, 10, procs=[proc(99, born=0.97)])
    (j,) = only(build_truth([], born, [], 10).intervals)
    assert j.start == 0.97 and j.began_by.startswith("born")


def test_time_seen_frozen_is_not_activity() -> None:
    seen = {A: {99: [(0.95, 3.0, "S"), (3.0, 6.0, "T"), (6.0, 8.05, "R")]}}
    intervals = only(build_truth([], scans(CIDS, seen, 0, 10), [], 10).intervals)
    assert covered(intervals, 2.9) and not covered(intervals, 4.5) and covered(intervals, 6.0)
    assert intervals[-1].resumed == "frozen"
    # A recording process: the same freeze cuts its records' interval.
    records = [*ticking("a", 100, 1.0, 3.0, token=1, end=None), *ticking("a", 100, 6, 8, 1)[1:]]
    seen = {A: {100: [(0.95, 3.0, "S"), (3.0, 6.0, "T"), (6.0, 8.05, "R")]}}
    pieces = only(build_truth(records, scans(CIDS, seen, 0, 10), [], 10).intervals)
    assert [(round(p.start, 3), p.end) for p in pieces] == [(1.0, 3.002), (5.9, 8.0)]


def test_a_freeze_of_the_whole_site_is_not_activity_unless_the_copy_acted_in_it() -> None:
    freeze = [fault(10, "site-frozen", {}, site="a"), fault(20, "site-thawed", {}, site="a")]
    quiet = [*ticking("a", 100, 0, 10, 1, end=None), rec(20.01, "a", "self-fenced", 100, 1)]
    first, resumed = only(build_truth(quiet, None, freeze, 30).intervals)
    assert (first.end, resumed.start, resumed.end) == (10, 20, 20.01)
    assert (resumed.resumed, resumed.acts) == ("site", 0)
    acted = [*quiet, rec(15, "a", "tick", 100, 1)]  # it ran during the "freeze"
    (whole,) = only(build_truth(acted, None, freeze, 30).intervals)
    assert (whole.start, whole.end) == (0, 20.01)
    # A freeze of site b, or a pause of a's agent alone, does not stop a's copy.
    other = [fault(10, "site-frozen", {}, site="b"), fault(10, "paused", {}, site="a")]
    (still,) = only(build_truth(quiet, None, other, 30).intervals)
    assert (still.start, still.end) == (0, 20.01)


def test_the_tether_and_control_hooks_are_not_the_copy() -> None:
    procs = [proc(98, "harmony"), proc(97, "hook:probe"), proc(96, "hook:fence"), proc(95)]
    lines = scans(CIDS, {A: {98: "S", 97: "S", 96: "S", 95: [(1, 2, "S")]}}, 0, 5, procs=procs)
    (i,) = only(build_truth([], lines, [], 5).intervals)
    assert i.procs == ("pid 95 python -m something (scans)",)


def test_a_wrapper_and_its_recording_child_are_one_copy() -> None:
    lines = scans(CIDS, {A: {99: [(0.95, 5.05, "S")], 100: [(1.0, 5.0, "S")]}}, 0, 10)
    records = ticking("a", 100, 1.0, 4.9, token=None)
    (i,) = only(build_truth(records, lines, [], 10).intervals)
    assert len(i.procs) == 2 and i.acts is None  # the wrapper could have acted: unknown


def test_two_tokens_on_one_site_are_two_copies() -> None:
    records = [*ticking("a", 100, 1, 5, token=3, end=None), *ticking("a", 101, 4, 6, token=9)]
    intervals = only(build_truth(records, None, [], 10).intervals)
    assert [i.token for i in intervals] == [3, 9]


def test_activity_is_clipped_to_the_checked_window() -> None:
    early = ticking("a", 100, 1, 2, token=4)  # an earlier start of the mesh, torn down
    records = [*early, *ticking("a", 200, 3, 50, token=1, end=None)]
    (i,) = only(build_truth(records, None, [], 10, since=2.5).intervals)
    assert (i.start, i.end, i.token) == (3, 10, 1) and "clipped" in i.ended_by


def test_no_ground_truth_for_a_workload_leaves_it_out() -> None:
    truth = build_truth(ticking("a", 100, 1, 2, workload="other"), None, [], 10)
    assert "w" not in truth.intervals and truth.sources == {"other": "records"}


# ------------------------------------------------------------------ files
def tiny_ledger(path: Path, rows: list[tuple[int, str, int, int, float]]) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("create table ledger (id integer primary key, site, token, pid, mono)")
        db.executemany("insert into ledger values (?, ?, ?, ?, ?)", rows)
    return path


def sqlite_reader(path: Path) -> list[Any]:
    with sqlite3.connect(path) as db:
        return list(db.execute("select id, site, token, pid, mono from ledger order by id"))


def test_files_of_a_run_are_found_and_read(tmp_path: Path) -> None:
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "a.w.jsonl").write_text("")
    tiny_ledger(tmp_path / "ledger.db", [(1, "a", 3, 100, 1.5)])
    files = truth_files(tmp_path)
    assert files.scans is None and files.ledger == tmp_path / "ledger.db"
    assert len(files.records) == 1
    truth = load_truth(files, [], 10, ledger_reader=sqlite_reader)
    assert truth.ledger == [LedgerRow(1, "a", 3, 100, 1.5)]
    # The runner's second start lives in attempt-2: its records are the ones checked.
    (tmp_path / "attempt-2" / "records").mkdir(parents=True)
    assert truth_files(tmp_path).records == ()


def test_unreadable_ground_truth_is_an_error_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "scans.jsonl"
    bad.write_text('{"kind": "scan", "t0": 1}\n{"kind": "stop", "mono": 2, "scans": 1, "cpu": 0}\n')
    with pytest.raises(TruthError, match=r"scans.jsonl:1: not a scanner line"):
        load_truth(TruthFiles(scans=bad), [], 10)
    bad.write_text('{"kind": "stop", "mono": 2, "scans": 1, "cpu": 0}\n{"kind": "sc')  # torn
    assert load_truth(TruthFiles(scans=bad), [], 10).intervals == {}
    with pytest.raises(TruthError, match="cannot read the ledger"):
        read_ledger_rows(tmp_path / "missing.db", sqlite_reader)
