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


def since_first_fault(result: SimResult, workload: str) -> set[str]:
    """The sites that ran `workload` from the scenario's first fault on. A copy that a
    standby won at boot, and the setup moved home (a `setup-move` note, then its `move`),
    ran before the scenario began and is left out."""
    homing = 0
    start = None
    for e in sorted(result.events, key=lambda e: e.mono):
        if e.kind == "setup-move":
            homing += 1
        elif e.incarnation == "sim" and "expect" in e.detail:
            if e.kind == "move" and homing:
                homing -= 1  # the setup's own move
                continue
            start = e.mono
            break
    assert result.intervals is not None and start is not None, "no fault in the history"
    return {i.site for i in result.intervals[workload] if i.end is None or i.end >= start}
