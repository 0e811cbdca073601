"""The steps and settings of issue 8's scenarios: typed, validated, with clear errors; and
what the backend makes of them (per-site configs with the ground-truth paths)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harmony.config import HooksDriverConfig, ProcessDriverConfig
from harmony.sim.backend import expand, workload_config
from harmony.sim.records import LEDGER_ENV, RECORDS_ENV
from harmony.sim.scenario import (
    HOOK_FAULTS,
    FillDisk,
    Flag,
    Freeze,
    Move,
    Partition,
    SiteStep,
    Thaw,
    Unflag,
)
from harmony.sim.scenario_file import ScenarioError, parse_scenario
from harmony.sim.validation import check_step

HEAD = 'name = "t"\nsites = ["a", "b", "c"]\n'
PROCESS = '[[workloads]]\nname = "ledger"\nprimary = "a"\nstandbys = ["b", "c"]\n'
HOOKS = PROCESS + 'driver = "hooks"\n'


def error(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as e:
        parse_scenario(text, "x.toml")
    return e.value


def test_new_steps_decode() -> None:
    sc = parse_scenario(
        HEAD
        + 'data_dir_size = { a = "8M" }\n'
        + HOOKS
        + '[[steps]]\ndo = "freeze"\nsite = "@runner:ledger"\nwhat = "agent+tether"\n'
        + '[[steps]]\ndo = "thaw"\nsite = "a"\n'
        + '[[steps]]\ndo = "flag"\nsite = "a"\nflag = "probe-fail"\nhold = 3\n'
        + '[[steps]]\ndo = "unflag"\nsite = "@all"\nflag = "stop-fail"\n'
        + '[[steps]]\ndo = "move"\nworkload = "ledger"\nto = "@next"\n'
        + '[[steps]]\ndo = "fill-disk"\nsite = "a"\n'
        + '[[steps]]\ndo = "partition"\ngroups = [["@runner:ledger"], ["@rest"]]\n'
    )
    freeze, thaw, flag, unflag, move, fill, part = sc.steps
    assert isinstance(freeze, Freeze) and freeze.what == "agent+tether"
    assert isinstance(thaw, Thaw) and thaw.site == "a"
    assert isinstance(flag, Flag) and flag.hold == 3 and flag.flag == "probe-fail"
    assert isinstance(unflag, Unflag) and unflag.site == "@all"
    assert isinstance(move, Move) and move.to == "@next" and move.via == ""
    assert isinstance(fill, FillDisk) and sc.data_dir_size == {"a": "8M"}
    assert isinstance(part, Partition) and part.groups[1] == ["@rest"]
    assert sc.workloads[0].driver == "hooks" and sc.uses_hooks
    default = parse_scenario(HEAD + '[[steps]]\ndo = "freeze"\nsite = "a"\n').steps[0]
    assert isinstance(default, Freeze) and default.what == "site"


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (PROCESS + '[[steps]]\ndo = "freeze"\nsite = "a"\nwhat = "vm"\n', "steps[0].what", ""),
        (PROCESS + '[[steps]]\ndo = "thaw"\nsite = "zz"\n', "steps[0].site", "not a site"),
        (
            PROCESS + '[[steps]]\ndo = "flag"\nsite = "a"\nflag = "probe-fail"\n',
            "steps[0].flag",
            "hooks",
        ),
        (HOOKS + '[[steps]]\ndo = "flag"\nsite = "a"\nflag = "explode"\n', "steps[0].flag", ""),
        (
            HOOKS + '[[steps]]\ndo = "flag"\nsite = "a"\nflag = "stop-fail"\nhold = 0\n',
            "steps[0].hold",
            "> 0",
        ),
        (HOOKS + '[[steps]]\ndo = "move"\nworkload = "x"\nto = "b"\n', "steps[0].workload", ""),
        (
            HEAD.replace('"c"]', '"c", "d"]') + PROCESS + '[[steps]]\ndo = "move"\n'
            'workload = "ledger"\nto = "d"\n',
            "steps[0].to",
            "topology",
        ),
        (PROCESS + '[[steps]]\ndo = "fill-disk"\nsite = "a"\n', "steps[0].site", "data_dir_size"),
        ('data_dir_size = { a = "lots" }\n', "data_dir_size.a", "a size like 8M"),
        ('data_dir_size = { a = "1M" }\n', "data_dir_size.a", "at least 4M"),
        ('data_dir_size = { q = "8M" }\n', "data_dir_size.q", "not a site"),
        ("[site_timings.q]\nlease_ttl = 6.0\n" + PROCESS, "site_timings.q", "not a site"),
        ("[site_timings.b]\nlease_ttl = 1.0\n" + PROCESS, "site_timings.b", "unsafe"),
        ("[site_timings.b]\nlease_ttl = -1.0\n" + PROCESS, "site_timings.b.lease_ttl", "> 0"),
        ("[site_timings.b]\nbogus = 1.0\n" + PROCESS, "site_timings.b", "bogus"),
        ('expect_refused = ["q"]\n', "expect_refused[0]", "not a site"),
        ('expect_refused = ["a", "b", "c"]\n', "expect_refused", "at least one"),
        (PROCESS.replace('["b", "c"]', "[]") + 'expect_refused = ["a"]\n', "workloads[0]", ""),
        (HOOKS + 'command = ["sleep", "1"]\n', "workloads[0].command", "leave command empty"),
        ('[random]\nfaults = ["hook-probe-fail"]\n' + PROCESS, "random.faults[0]", "hooks"),
        (
            PROCESS + '[[steps]]\ndo = "partition"\ngroups = [["a", "@rest"], ["b"]]\n',
            "steps[0].groups",
            "@rest",
        ),
    ],
)
def test_bad_new_settings_name_field_and_reason(body: str, field: str, words: str) -> None:
    e = error(body if body.startswith("name") else HEAD + body)
    assert e.field.startswith(field), str(e)
    assert words in e.reason, str(e)
    assert str(e).startswith("x.toml")


def test_random_kinds_follow_the_drivers() -> None:
    plain = parse_scenario(HEAD + PROCESS)
    hooks = parse_scenario(HEAD + HOOKS)
    assert not set(HOOK_FAULTS) & set(plain.random_kinds())
    assert set(HOOK_FAULTS) <= set(hooks.random_kinds())
    assert {"agent-kill", "freeze-site", "freeze-agent+tether"} <= set(plain.random_kinds())


def test_site_timings_apply_to_that_site_only() -> None:
    sc = parse_scenario(HEAD + "[site_timings.b]\nlease_ttl = 6.0\n" + PROCESS)
    assert sc.timing_values("b").lease_ttl == 6.0
    assert sc.timing_values("a").lease_ttl == sc.timing_values().lease_ttl == 4.0


def test_workload_configs_carry_the_ground_truth_paths(tmp_path: Path) -> None:
    sc = parse_scenario(HEAD + PROCESS + HOOKS.replace('"ledger"', '"web"'))
    truth = tmp_path / "run"
    process = workload_config(sc.workloads[0], truth / "attempt-2", "b", truth)
    assert isinstance(process.driver, ProcessDriverConfig)
    assert process.driver.env[RECORDS_ENV] == str(truth / "records" / "b.ledger.jsonl")
    assert process.driver.env[LEDGER_ENV] == str(truth / "ledger.db")
    hooks = workload_config(sc.workloads[1], truth, "c")
    assert isinstance(hooks.driver, HooksDriverConfig)
    assert hooks.driver.env[RECORDS_ENV] == str(truth / "records" / "c.web.jsonl")
    assert "harmony.sim.hook_scripts probe --dir" in hooks.driver.probe
    assert str(truth / "hooks" / "c") in hooks.driver.fence
    assert hooks.driver.probe_interval == 0.5


def test_python_placeholder() -> None:
    assert expand(["{python}", "-m", "x"]) == [sys.executable, "-m", "x"]
    assert expand(["sh", "-c", "{python} -m x & wait"])[2] == f"{sys.executable} -m x & wait"


def test_a_scenario_this_machine_cannot_mount_for_is_skipped_except_under_ci(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from rich.console import Console

    from harmony.sim import cli, disk
    from harmony.sim.suite import run_suite

    monkeypatch.setattr(disk, "mount_unavailable", lambda: "mounting a tmpfs needs root")
    library = Path(__file__).resolve().parents[2] / "scenarios"
    monkeypatch.delenv("CI", raising=False)
    assert cli.main(["run", str(library / "holder-disk-full.toml")]) == 0
    assert "SKIPPED holder-disk-full" in capsys.readouterr().out
    (outcome,) = run_suite([library / "holder-disk-full.toml"], tmp_path, Console(quiet=True))
    assert outcome.ok and outcome.detail == "skipped: data_dir_size needs a tmpfs mount: " + (
        "mounting a tmpfs needs root"
    )
    monkeypatch.setenv("CI", "true")
    assert cli.main(["run", str(library / "holder-disk-full.toml")]) == 1
    (outcome,) = run_suite([library / "holder-disk-full.toml"], tmp_path, Console(quiet=True))
    assert not outcome.ok


@pytest.mark.parametrize(
    ("code", "log", "problem"),
    [
        (None, "", "it started and kept running"),
        (1, "lease_ttl 8 vs 4", "exited with code 1, not 2"),
        (2, "refused: lease_ttl = 8.0 s here, the bucket's max_age is 4 s", ""),
        (2, "lease_ttl 8.0 disagrees with max_age 4000000000ns", "names 4"),
        (2, "lease_ttl 18 vs 14", "names 8 and 4"),
        (2, "12:04:08 bucket disagrees", "names 8 and 4"),
    ],
)
def test_a_refusal_names_both_lease_ttl_values(code: int | None, log: str, problem: str) -> None:
    from harmony.sim.steps import refusal_problem

    found = refusal_problem(code, log, 8.0, 4.0)
    assert (problem in found) if problem else found == "", found


class Unknown(SiteStep, tag="unknown", tag_field="do", kw_only=True):
    """A kind of step that neither the checks nor the executor know."""


def test_a_kind_of_step_without_checks_is_refused() -> None:
    sc = parse_scenario(HEAD + PROCESS)
    problem = check_step(sc, Unknown(site="a"))  # type: ignore[arg-type]
    assert problem == ("do", "no checks for steps of kind Unknown")


def test_a_kind_of_step_nobody_can_carry_out_is_an_error_not_a_skip() -> None:
    from harmony.sim.steps import StepError, Steps

    # The executor must refuse before touching the run: no run is needed to show it.
    with pytest.raises(StepError, match="kind Unknown"):
        Steps(None).execute(Unknown(site="a"))  # type: ignore[arg-type]
