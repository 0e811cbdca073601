"""Every checker reports a violation planted in a history, and stays quiet on a clean one."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from support.histories import ev, fault, history, rec, run, scans, ticking

from harmony.actors.journal import JournalEvent, read_journal
from harmony.sim.checks import (
    JOURNAL_ONLY,
    Violation,
    check_absolute,
    check_all,
    check_recovery,
    check_sides,
    check_stale_writes,
    evaluate,
)
from harmony.sim.history import Interval, active_intervals, write_history
from harmony.sim.records import Record, append_record, open_records
from harmony.sim.scenario_file import parse_scenario
from harmony.sim.truth import LedgerRow, build_truth
from harmony.sim.truthfiles import TruthFiles, truth_files


def absolute(events: Sequence[JournalEvent], horizon: float) -> list[Violation]:
    """The journal-only checker (what the simulator trusted before ground truth)."""
    return check_absolute(active_intervals(list(events), "w"), "w", horizon, events=events)[0]


def truth(
    records: list[Record], events: Sequence[JournalEvent] = (), horizon: float = 60
) -> list[Interval]:
    return build_truth(records, None, events, horizon).intervals["w"]


ABC = "a,b,c"


def test_clean_failover_passes_every_checker() -> None:
    h = history(
        run("a", 0, 10, token=1),
        fault(5, "partition", {"w": {"a": 0, "b,c": 1}}),
        run("b", 11, None, token=7),
        fault(20, "heal", {"w": {ABC: 1}}),
    )
    violations, recoveries, residuals = check_all(h, {"w": "absolute-consistency"}, 30, 45, 20)
    assert violations == [] and residuals == []
    assert [r.took for r in recoveries] == [6, 0]


def test_overlapping_active_intervals_are_reported() -> None:
    h = history(run("a", 0, 12, token=1), run("b", 11, None, token=7))
    (v,) = absolute(h, 30)
    assert v.checker == "absolute-consistency" and set(v.sites) == {"a", "b"}
    assert v.at == 11


def test_an_unknown_outcome_counts_as_active_until_the_end() -> None:
    # a never reported its copy stopped (frozen agent): it is possibly active, so b's start
    # overlaps it even though nothing says a ran at that time.
    h = history(run("a", 0, None, token=1), run("b", 11, 20, token=7))
    (v,) = absolute(h, 30)
    assert "one end unknown" in v.message


def test_a_killed_site_proves_its_copy_stopped() -> None:
    h = history(
        run("a", 0, None, token=1), fault(5, "site-killed", {}, site="a"), run("b", 11, None, 7)
    )
    assert absolute(h, 30) == []


def test_a_fencing_token_that_does_not_grow_is_reported() -> None:
    h = history(run("a", 0, 5, token=7), run("b", 6, 9, token=7), run("c", 10, None, token=3))
    found = [v for v in absolute(h, 30) if v.checker == "fencing-token"]
    assert len(found) == 2
    assert "from 7 on a to 7 on b" in found[0].message
    assert "from 7 on b to 3 on c" in found[1].message


def test_no_recovery_within_the_bound_is_reported() -> None:
    h = history(
        run("a", 0, 6, token=1), fault(5, "site-killed", {"w": {"b,c": 1, "(down)": 0}}, "a")
    )
    violations, recoveries = check_recovery(h, ["w"], 100, 45)
    (v,) = violations
    assert v.checker == "recovery" and "not reached in 95.0 s" in v.message
    assert recoveries[0].took is None


def test_recovery_that_is_lost_again_counts_from_the_second_time() -> None:
    h = history(
        run("b", 0, 12, token=7),
        fault(10, "heal", {"w": {ABC: 1}}),
        run("b", 18, None, token=16),  # b lost its lease after the heal: a 6 s outage
    )
    violations, recoveries = check_recovery(h, ["w"], 100, 5)
    assert recoveries[0].took == 8
    assert violations and "reached after 8.0 s" in violations[0].message


def test_a_newer_fault_carries_the_obligation() -> None:
    h = history(
        run("a", 0, 6),
        fault(5, "partition", {"w": {"a": 0, "b,c": 1}}),
        fault(8, "heal", {"w": {ABC: 1}}),
        run("a", 9, None),
    )
    violations, _ = check_recovery(h, ["w"], 30, 10)
    assert violations == []


def test_unknown_expectations_are_not_checked() -> None:
    h = history(run("a", 0, 3), fault(1, "paused", {"w": None}, "a"))
    assert check_recovery(h, ["w"], 100, 5)[0] == []


def test_split_brain_side_without_a_copy_is_reported() -> None:
    h = history(
        run("a", 0, None),
        fault(5, "partition", {"w": {"a": 1, "b,c": 1}}),
        run("b", 9, 14),  # the majority's replacement died and nobody replaced it
    )
    (v,) = check_sides(h, "w", 40, 10)
    assert v.checker == "split-brain-allowed" and v.sites == ("b", "c")
    assert v.at == 15


def test_split_brain_both_sides_running_passes() -> None:
    h = history(
        run("a", 0, None),
        fault(5, "partition", {"w": {"a": 1, "b,c": 1}}),
        run("b", 9, 32),
        fault(30, "heal", {"w": {ABC: 1}}),
    )
    assert check_sides(h, "w", 40, 10) == []
    assert check_recovery(h, ["w"], 40, 10)[0] == []


def test_split_brain_copies_that_never_converge_are_reported() -> None:
    h = history(
        run("a", 0, None),
        fault(5, "partition", {"w": {"a": 1, "b,c": 1}}),
        run("b", 9, None),
        fault(30, "heal", {"w": {ABC: 1}}),  # both copies keep running after the heal
    )
    violations, _, _ = check_all(h, {"w": "split-brain-allowed"}, 80, 20, 10)
    assert [v.checker for v in violations] == ["recovery"]
    assert "after heal" in violations[0].message


def test_a_failed_wait_is_a_violation() -> None:
    from harmony.actors.journal import JournalEvent
    from harmony.sim.checks import SIM

    failed = JournalEvent(
        site="",
        workload="w",
        kind="wait-failed",
        reason="w never ran on b",
        mono=3,
        wall=3,
        incarnation=SIM,
    )
    violations, _, _ = check_all(
        history(run("a", 0, None), failed), {"w": "absolute-consistency"}, 9, 5, 5
    )
    assert [v.checker for v in violations] == ["wait-until"]


def test_copies_of_another_workload_do_not_count() -> None:
    h = history(run("a", 0, None), ev(1, "b", "start", workload="other", token=9))
    assert absolute(h, 5) == []


def test_a_fault_can_carry_its_own_tighter_bound() -> None:
    heal = fault(10, "heal", {"w": {ABC: 1}})
    heal.detail["bound"] = "1"
    h = history(run("b", 0, 12, token=7), heal, run("a", 14, None, token=9))
    violations, recoveries = check_recovery(h, ["w"], 30, 45)
    assert recoveries[0].took == 4
    (v,) = violations
    assert "reached after 4.0 s (bound 1 s)" in v.message


# ------------------------------------------------------------------ ground truth
SCENARIO = parse_scenario(
    'name = "t"\nproves = "t"\nsites = ["a", "b", "c"]\n'
    '[[workloads]]\nname = "w"\nprimary = "a"\nstandbys = ["b", "c"]\n'
)


def planted() -> tuple[list[JournalEvent], list[Record]]:
    """The journal says a's copy stopped at 12 and b's started at 13; a's records say it
    kept ticking until 30 (a failed stop hook, an orphaned grandchild...)."""
    journal = history(run("a", 0, 12, token=1), run("b", 13, None, token=2))
    records = [*ticking("a", 100, 0.2, 30, token=1), *ticking("b", 200, 13.3, 40, token=2)]
    return journal, records


def write_records(workdir: Path, records: list[Record]) -> TruthFiles:
    (workdir / "records").mkdir(parents=True, exist_ok=True)
    for r in records:
        fd = open_records(workdir / "records" / f"{r.site}.{r.workload}.jsonl")
        append_record(fd, r)
        os.close(fd)
    return truth_files(workdir)


def test_planted_overlap_that_the_journal_hides_is_reported(tmp_path: Path) -> None:
    journal, records = planted()
    assert absolute(journal, 40) == []  # the journal-only checker is fooled
    (v,) = check_absolute(truth(records), "w", 40, events=journal)[0]
    assert v.checker == "absolute-consistency" and v.sites == ("a", "b")
    assert v.at == 13.3 and "for 16.70 s (tokens 1 and 2" in v.message
    assert "pid 100" in v.message and "stop record at +30.000 s" in v.message
    assert "journal says a's copy (token 1) stopped at +12.0 s (driver-stopped)" in v.explain
    assert "ground truth: active until +30.0 s" in v.explain
    # The same through evaluate, from the files a run leaves.
    checked = evaluate(journal, SCENARIO, 40, write_records(tmp_path, records))
    assert [v.checker for v in checked.violations] == ["absolute-consistency"]
    assert checked.sources == {"w": "records"}


def test_without_ground_truth_the_evaluation_says_journal_only() -> None:
    journal, _ = planted()
    checked = evaluate(journal, SCENARIO, 40)
    assert checked.violations == [] and checked.sources == {"w": JOURNAL_ONLY}
    required = evaluate(journal, SCENARIO, 40, TruthFiles(), require_truth=True)
    (v,) = required.violations
    assert v.checker == "ground-truth" and "journal alone" in v.message


def test_unreadable_ground_truth_is_a_violation(tmp_path: Path) -> None:
    (tmp_path / "scans.jsonl").write_text("garbage\n")
    (v,) = evaluate([], SCENARIO, 40, truth_files(tmp_path)).violations
    assert v.checker == "ground-truth" and "scans.jsonl:1" in v.message


def frozen_site(*after: Record) -> tuple[list[JournalEvent], list[Record]]:
    """Site a frozen whole from 10 to 20; b took over at 18.5."""
    faults = [fault(10, "site-frozen", {}, site="a"), fault(20, "site-thawed", {}, site="a")]
    records = [*ticking("a", 100, 0, 10, token=1, end=None), *after]
    records += ticking("b", 200, 18.5, 40, token=2)
    return history(*faults), records


def test_a_frozen_site_that_resumes_and_fences_without_acting_is_a_residual_note() -> None:
    events, records = frozen_site(rec(20.02, "a", "self-fenced", 100, 1))
    violations, residuals = check_absolute(truth(records, events), "w", 40, events=events)
    assert violations == []
    (note,) = residuals
    assert note.checker == "residual" and "0.020 s" in note.message
    assert "resumed after its whole site was frozen" in note.message


def test_a_resumed_copy_that_acts_or_lingers_is_a_violation() -> None:
    events, records = frozen_site(
        rec(20.01, "a", "tick", 100, 1), rec(20.02, "a", "self-fenced", 100, 1)
    )
    violations, residuals = check_absolute(truth(records, events), "w", 40, events=events)
    assert [v.checker for v in violations] == ["absolute-consistency"] and residuals == []
    events, records = frozen_site(rec(21.5, "a", "self-fenced", 100, 1))  # 1.5 s > bound
    violations, _ = check_absolute(truth(records, events), "w", 40, events=events)
    assert len(violations) == 1
    relaxed = check_absolute(truth(records, events), "w", 40, resume_bound=2.0)
    assert relaxed[0] == [] and len(relaxed[1]) == 1


def test_two_copies_on_one_site_under_two_tokens_are_a_violation() -> None:
    # An orphan of a's earlier copy (token 3) still runs when a starts again under token 9.
    records = [*ticking("a", 100, 1, 8, token=3, end=None), *ticking("a", 101, 5, 9, token=9)]
    (v,) = check_absolute(truth(records), "w", 20)[0]
    assert "two copies active on a at the same time" in v.message


def test_a_copy_resuming_after_a_freeze_is_not_a_token_regression() -> None:
    events, records = frozen_site(rec(20.02, "a", "self-fenced", 100, 1))
    violations, _ = check_absolute(truth(records, events), "w", 40)
    assert [v for v in violations if v.checker == "fencing-token"] == []


def test_a_stale_token_committed_to_the_ledger_is_reported() -> None:
    owners = {("a", 100): "w", ("b", 200): "w", ("c", 300): "other"}
    rows = [
        LedgerRow(1, "a", 3, 100, 1.0),
        LedgerRow(2, "b", 7, 200, 2.0),
        LedgerRow(3, "c", 1, 300, 2.5),  # another workload: its own token sequence
        LedgerRow(4, "a", 3, 100, 3.0),  # a's copy wrote after b's token 7 was committed
        LedgerRow(5, "b", 7, 200, 4.0),
    ]
    (v,) = check_stale_writes(rows, owners)
    assert v.checker == "stale-write" and v.workload == "w" and v.at == 3.0
    assert "row 4 committed by a (pid 100) with token 3 after row 2 by b with token 7" in v.message


def test_a_history_file_round_trip_keeps_the_check(tmp_path: Path) -> None:
    journal, records = planted()
    path = write_history(tmp_path / "history.jsonl", journal)
    checked = evaluate(read_journal(path), SCENARIO, 40, write_records(tmp_path, records))
    assert len(checked.violations) == 1 and checked.intervals["w"][0].procs


def test_a_frozen_copy_killed_by_its_watcher_is_a_residual_note_not_an_overlap() -> None:
    """Seen frozen (T) by the scans, then briefly running as SIGKILL takes it (a dying
    process is woken to exit), then gone: no act after the freeze, the older token, within
    the bound: the documented residual, not two active copies."""
    cid = "a.0123456789.w"
    records = [*ticking("a", 100, 1.0, 10.0, token=1, end=None)]
    records += ticking("b", 200, 12.0, 30.0, token=2)
    seen = {cid: {100: [(0.95, 10.0, "S"), (10.0, 15.0, "T"), (15.0, 15.05, "R")]}}
    lines = scans({cid: ("a", "w")}, seen, 0, 30)
    intervals = build_truth(records, lines, [], 30).intervals["w"]
    violations, residuals = check_absolute(intervals, "w", 30)
    assert violations == []
    (note,) = residuals
    assert "resumed after it was frozen" in note.message and "without acting" in note.message
    # The same, but it ticked after the thaw: an overlap.
    acted = [*records, rec(15.02, "a", "tick", 100, 1)]
    intervals = build_truth(acted, lines, [], 30).intervals["w"]
    assert [v.checker for v in check_absolute(intervals, "w", 30)[0]] == ["absolute-consistency"]
