"""Random mode draws lazily: rounds keep coming while the duration lasts, however long each
one takes, and the same seed gives the same sequence of rounds."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from harmony.sim.randomized import FAULTS, RandomSchedule
from harmony.sim.scenario import FAULT_KINDS, WaitUntil
from harmony.sim.scenario_file import load_scenario, parse_scenario

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def play(schedule: RandomSchedule, seconds_per_step: float) -> tuple[list[object], float]:
    """Consume the schedule as the runner does, each step taking that long."""
    clock = FakeClock()
    start, steps = clock.now, []
    for step in schedule.steps(clock):
        steps.append(step)
        clock.now += seconds_per_step
    return steps, clock.now - start


@pytest.mark.parametrize("per_step", [0.5, 4.0, 40.0])
def test_rounds_fill_the_duration_whatever_they_take(per_step: float) -> None:
    sc = load_scenario(LIBRARY / "soak.toml")
    schedule = RandomSchedule(sc, 7, 90.0)
    steps, took = play(schedule, per_step)
    assert took >= 90.0  # the faults went on until the duration was used up
    # ... and no round started after it: the last one began before 90 s.
    ends = [i for i, s in enumerate(steps) if isinstance(s, WaitUntil)]
    assert ends[-1] == len(steps) - 1
    last_start = (ends[-2] + 1) if len(ends) > 1 else 0
    assert last_start * per_step < 90.0
    assert schedule.rounds == len(ends)


def test_same_seed_same_rounds_only_the_count_depends_on_time() -> None:
    sc = load_scenario(LIBRARY / "soak.toml")
    fast, _ = play(RandomSchedule(sc, 11, 60.0), 0.5)
    slow, _ = play(RandomSchedule(sc, 11, 60.0), 5.0)
    assert len(fast) > len(slow)
    encode = msgspec.json.encode
    assert encode(fast[: len(slow)]) == encode(slow)
    assert encode(RandomSchedule(sc, 11, 60.0).preview(50)[: len(slow)]) == encode(slow)


def test_new_kinds_are_drawn() -> None:
    sc = parse_scenario(
        'name = "t"\nsites = ["a", "b", "c"]\n'
        '[[workloads]]\nname = "ledger"\nprimary = "a"\nstandbys = ["b", "c"]\ndriver = "hooks"\n'
    )
    steps = RandomSchedule(sc, 3, 0).preview(200)
    kinds = {type(s).__name__ for s in steps}
    assert {"Freeze", "Thaw", "Flag", "Unflag", "Move", "Kill"} <= kinds
    freezes = {getattr(s, "what", "") for s in steps if type(s).__name__ == "Freeze"}
    assert freezes == {"site", "agent+tether"}
    assert {getattr(s, "what", "") for s in steps if type(s).__name__ == "Kill"} >= {"agent"}


def test_every_kind_of_fault_has_one_way_to_be_drawn_and_no_other_is_drawn() -> None:
    assert set(FAULTS) == set(FAULT_KINDS)
    sc = parse_scenario('name = "t"\nsites = ["a", "b", "c"]\nrandom.faults = ["kill"]\n')
    schedule = RandomSchedule(sc, 1, 10)
    schedule.kinds = ["no-such-fault"]  # validation refuses it in a file; code must too
    with pytest.raises(ValueError, match="no-such-fault"):
        schedule.next_round()
