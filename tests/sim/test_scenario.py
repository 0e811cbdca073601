"""Scenario files: every library file is valid; a bad file names file, field and line."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from harmony.sim.randomized import RandomSchedule
from harmony.sim.scenario import Kill, Partition
from harmony.sim.scenario_file import ScenarioError, load_scenario, parse_scenario

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios"
HEAD = 'name = "t"\nsites = ["a", "b", "c"]\n'
WORKLOAD = '[[workloads]]\nname = "ledger"\nprimary = "a"\nstandbys = ["b", "c"]\n'


def test_the_library_has_at_least_ten_valid_scenarios_each_saying_what_it_proves() -> None:
    files = sorted(LIBRARY.glob("*.toml"))
    assert len(files) >= 10
    for f in files:
        sc = load_scenario(f)
        assert sc.proves, f"{f.name} has no `proves`"
        assert f.read_text().startswith("# Proves"), f"{f.name} has no leading comment"
        assert sc.steps


def test_steps_decode_into_typed_structs() -> None:
    sc = parse_scenario(
        HEAD + WORKLOAD + '[[steps]]\nat = 2\ndo = "partition"\ngroups = [["a"], ["b", "c"]]\n'
        '[[steps]]\ndo = "kill"\nsite = "@leader"\nwhat = "server"\n'
    )
    part, kill = sc.steps
    assert isinstance(part, Partition) and part.groups == [["a"], ["b", "c"]] and part.at == 2
    assert isinstance(kill, Kill) and kill.what == "server" and kill.at is None


@pytest.mark.parametrize(
    ("body", "field", "line"),
    [
        ('[[steps]]\ndo = "heal"\n\n[[steps]]\ndo = "kill"\nsite = "zz"\n', "steps[1].site", 8),
        ('[[steps]]\ndo = "heal"\nbogus = 1\n', "steps[0].bogus", 5),
        ('[[steps]]\ndo = "explode"\n', "steps[0].do", 4),
        ('[[steps]]\ndo = "partition"\ngroups = [["a"]]\n', "steps[0].groups", 5),
        ('[[steps]]\ndo = "drop"\nprobability = 2\n', "steps[0].probability", 5),
        ('[[steps]]\ndo = "wait-until"\ntimeout = 3\n', "steps[0].do", 4),
        ("[timings]\nlease_ttl = 1.0\n", "timings", 3),
    ],
)
def test_a_bad_file_names_the_field_and_the_line(
    tmp_path: Path, body: str, field: str, line: int
) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(HEAD + WORKLOAD + body if "timings" in body else HEAD + body)
    with pytest.raises(ScenarioError) as e:
        load_scenario(f)
    assert e.value.field == field
    assert e.value.file == str(f)
    if "timings" not in body:
        assert e.value.line == line, str(e.value)
    assert str(e.value).startswith(str(f))


def test_unsafe_timings_are_refused_naming_the_inequality() -> None:
    with pytest.raises(ScenarioError, match="unsafe for absolute-consistency"):
        parse_scenario(HEAD + "[timings]\nlease_ttl = 1.0\n" + WORKLOAD)


def test_a_workload_on_an_unknown_site_is_refused() -> None:
    with pytest.raises(ScenarioError) as e:
        parse_scenario(HEAD + '[[workloads]]\nname = "w"\nprimary = "x"\n')
    assert e.value.field == "workloads[0].primary"


def test_not_toml_at_all() -> None:
    with pytest.raises(ScenarioError, match="not valid TOML"):
        parse_scenario("name = \n")


def test_random_mode_same_seed_same_rounds() -> None:
    sc = load_scenario(LIBRARY / "minority-partition.toml")
    one = RandomSchedule(sc, 42, 300).preview(20)
    assert msgspec.json.encode(one) == msgspec.json.encode(RandomSchedule(sc, 42, 300).preview(20))
    assert msgspec.json.encode(one) != msgspec.json.encode(RandomSchedule(sc, 43, 300).preview(20))
    kinds = {type(s).__name__ for s in one}
    assert "WaitUntil" in kinds and len(kinds) >= 4


def test_a_drawn_schedule_is_a_valid_scenario() -> None:
    from harmony.sim.validation import first_problem

    for name in ("witness-loss", "soak", "probe-fails-on-holder"):
        sc = load_scenario(LIBRARY / f"{name}.toml")
        for seed in range(20):
            steps = RandomSchedule(sc, seed, 120).preview(8)
            assert first_problem(msgspec.structs.replace(sc, steps=steps)) is None, (name, seed)
