"""Every checker reports a violation planted in a history, and stays quiet on a clean one."""

from __future__ import annotations

from harmony.sim.checks import (
    check_absolute,
    check_all,
    check_recovery,
    check_sides,
)

from .histories import ev, fault, history, run

ABC = "a,b,c"


def test_clean_failover_passes_every_checker() -> None:
    h = history(
        run("a", 0, 10, token=1),
        fault(5, "partition", {"w": {"a": 0, "b,c": 1}}),
        run("b", 11, None, token=7),
        fault(20, "heal", {"w": {ABC: 1}}),
    )
    violations, recoveries = check_all(h, {"w": "absolute-consistency"}, 30, 45, 20)
    assert violations == []
    assert [r.took for r in recoveries] == [6, 0]


def test_overlapping_active_intervals_are_reported() -> None:
    h = history(run("a", 0, 12, token=1), run("b", 11, None, token=7))
    (v,) = check_absolute(h, "w", 30)
    assert v.checker == "absolute-consistency" and set(v.sites) == {"a", "b"}
    assert v.at == 11


def test_an_unknown_outcome_counts_as_active_until_the_end() -> None:
    # a never reported its copy stopped (frozen agent): it is possibly active, so b's start
    # overlaps it even though nothing says a ran at that time.
    h = history(run("a", 0, None, token=1), run("b", 11, 20, token=7))
    (v,) = check_absolute(h, "w", 30)
    assert "one end unknown" in v.message


def test_a_killed_site_proves_its_copy_stopped() -> None:
    h = history(
        run("a", 0, None, token=1), fault(5, "site-killed", {}, site="a"), run("b", 11, None, 7)
    )
    assert check_absolute(h, "w", 30) == []


def test_a_fencing_token_that_does_not_grow_is_reported() -> None:
    h = history(run("a", 0, 5, token=7), run("b", 6, 9, token=7), run("c", 10, None, token=3))
    found = [v for v in check_absolute(h, "w", 30) if v.checker == "fencing-token"]
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
    violations, _ = check_all(h, {"w": "split-brain-allowed"}, 80, 20, 10)
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
    violations, _ = check_all(
        history(run("a", 0, None), failed), {"w": "absolute-consistency"}, 9, 5, 5
    )
    assert [v.checker for v in violations] == ["wait-until"]


def test_copies_of_another_workload_do_not_count() -> None:
    h = history(run("a", 0, None), ev(1, "b", "start", workload="other", token=9))
    assert check_absolute(h, "w", 5) == []


def test_a_fault_can_carry_its_own_tighter_bound() -> None:
    heal = fault(10, "heal", {"w": {ABC: 1}})
    heal.detail["bound"] = "1"
    h = history(run("b", 0, 12, token=7), heal, run("a", 14, None, token=9))
    violations, recoveries = check_recovery(h, ["w"], 30, 45)
    assert recoveries[0].took == 4
    (v,) = violations
    assert "reached after 4.0 s (bound 1 s)" in v.message
