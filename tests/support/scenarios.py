"""Running a library scenario (scenarios/*.toml) on real processes, the way the tests judge it:
nothing left behind, the verdict from ground truth, and a failure message that carries the
evidence (pytest cuts long reprs short)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from harmony.sim.backend import pids_with_env, sim_marker
from harmony.sim.launch import pids_mentioning
from harmony.sim.result import SimResult
from harmony.sim.runner import run_scenario
from harmony.sim.scenario_file import load_scenario

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios"


def assert_nothing_left(workdir: Path) -> None:
    assert pids_mentioning(str(workdir)) == []
    assert pids_with_env(sim_marker(workdir.resolve())) == []


def why(result: SimResult) -> str:
    """Everything a CI log needs to tell a real overlap from a measurement: the full
    violations and every ground-truth interval with its evidence."""
    lines = [f"error: {result.error}", f"leftovers: {result.leftovers}"]
    lines += [f"VIOLATION {v.message} || {v.explain}" for v in result.violations]
    for w, intervals in (result.intervals or {}).items():
        lines += [
            f"{w} {i.site} token={i.token} {i.start:.3f}..{i.end} began={i.began_by!r} "
            f"ended={i.ended_by!r} procs={i.procs}"
            for i in intervals
        ]
    return "\n".join(lines)


def run_library(name: str, tmp_path: Path) -> SimResult:
    """Run scenarios/<name>.toml in `tmp_path`/run; it must pass and leave nothing."""
    workdir = tmp_path / "run"
    result = run_scenario(
        load_scenario(LIBRARY / f"{name}.toml"), workdir, console=Console(quiet=True), live=False
    )
    assert_nothing_left(workdir)
    assert result.ok, why(result)
    assert result.intervals is not None
    return result
