"""`harmony sim run` on real processes: a passing scenario, a failing one, Ctrl-C, cleanup.

Each test starts a real 3-site mesh (agents + nats-servers + workload processes) and then
checks that nothing it started is left: no process naming the work directory, and no
workload process carrying the simulation's environment marker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import types
from pathlib import Path

import pytest
from rich.console import Console
from support.commands import HARMONY
from support.scenarios import LIBRARY, assert_nothing_left
from support.waiting import wait_until

from harmony.actors.journal import read_journal
from harmony.sim.launch import pids_mentioning
from harmony.sim.observe import runners
from harmony.sim.randomized import RandomSchedule
from harmony.sim.report import write_html
from harmony.sim.runner import Simulation, run_scenario
from harmony.sim.scenario import Move
from harmony.sim.scenario_file import load_scenario, parse_scenario

pytestmark = pytest.mark.mesh


def test_minority_partition_passes_and_leaves_a_history_and_a_report(tmp_path: Path) -> None:
    scenario = load_scenario(LIBRARY / "minority-partition.toml")
    workdir = tmp_path / "run"
    result = run_scenario(scenario, workdir, console=Console(quiet=True), live=False)
    assert_nothing_left(workdir)
    assert result.ok, (result.violations, result.error, result.leftovers)

    events = read_journal(result.history_path)
    assert [e.mono for e in events] == sorted(e.mono for e in events)
    assert {e.site for e in events if e.kind == "agent-start"} == {"a", "b", "c"}
    faults = [e for e in events if e.incarnation == "sim" and "expect" in e.detail]
    assert [f.kind for f in faults] == ["partition", "heal"]
    fenced = next(e for e in events if e.site == "a" and e.kind == "driver-fenced")
    started = next(e for e in events if e.site == "b" and e.kind == "start")
    assert fenced.mono < started.mono  # the minority fenced before the majority started
    assert [r.took is not None for r in result.recoveries] == [True, True]

    page = write_html(result, tmp_path / "report.html").read_text()
    assert "<svg" in page and "PASS" in page and "partition" in page


def test_a_failed_condition_exits_1_and_a_bad_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nsites = ["a"]\n[[steps]]\ndo = "kill"\nsite = "nope"\n')
    out = subprocess.run([*HARMONY, "sim", "run", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2
    assert f"{bad}:5: steps[0].site" in out.stdout.replace("\n", "")

    scenario = tmp_path / "impossible.toml"
    scenario.write_text(
        (LIBRARY / "minority-partition.toml").read_text().split("[[steps]]")[0]
        + '[[steps]]\ndo = "wait-until"\nworkload = "ledger"\nrunning_on = ["c"]\ntimeout = 2\n'
    )
    parse_scenario(scenario.read_text())  # valid: it is the condition that cannot hold
    workdir = tmp_path / "run"
    report = tmp_path / "r.html"
    out = subprocess.run(
        [
            *HARMONY,
            "sim",
            "run",
            str(scenario),
            "--dir",
            str(workdir),
            "--report",
            str(report),
            "--log-format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert out.returncode == 1, out.stderr[-3000:]
    # --log-format json: the report for people on stderr, one JSON object a line on stdout,
    # and the agents' logs in JSON too.
    assert "FAIL" in out.stderr and "wait-until" in out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert all({"time", "level", "event", "message"} <= line.keys() for line in lines)
    assert any(ln["event"] == "sim-step" and "wait-until" in ln["message"] for ln in lines)
    assert lines[-1]["event"] == "sim-result" and lines[-1]["ok"] is False
    agent_log = [json.loads(line) for line in (workdir / "a.log").read_text().splitlines()]
    assert agent_log and all(line["site"] == "a" for line in agent_log)
    assert report.exists() and "wait-until" in report.read_text()
    assert_nothing_left(workdir)


def test_ctrl_c_stops_every_process_and_exits_130(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    proc = subprocess.Popen(
        [*HARMONY, "sim", "run", str(LIBRARY / "primary-crash.toml"), "--dir", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Interrupt once the sites run (their ready files exist), mid-simulation.
        wait_until(
            lambda: len(list(workdir.glob("*.ready"))) == 3 and pids_mentioning(str(workdir)),
            90,
            message="sites never became ready",
        )
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out[-3000:]
    assert "interrupted" in out
    assert_nothing_left(workdir)


def test_sigterm_is_handled_like_ctrl_c(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    env = dict(os.environ)
    proc = subprocess.Popen(
        [*HARMONY, "sim", "run", str(LIBRARY / "minority-partition.toml"), "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        wait_until(lambda: len(list(workdir.glob("*.ready"))) == 3, 90, message="not ready")
        proc.terminate()
        assert proc.wait(90) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_nothing_left(workdir)


class FakeScanner:
    """Stands in for `harmony.sim.scanner.Scanner` (the checker's side, built apart)."""

    made: list[FakeScanner] = []

    def __init__(self, path: Path, containments: dict[tuple[str, str], str], period: float):
        self.path, self.containments, self.period = path, containments, period
        self.calls: list[str] = []
        FakeScanner.made.append(self)

    def start(self) -> None:
        self.calls.append("start")

    def stop(self) -> None:
        self.calls.append("stop")


def test_random_mode_keeps_injecting_until_its_duration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = types.ModuleType("harmony.sim.scanner")
    module.Scanner = FakeScanner  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "harmony.sim.scanner", module)
    scenario = parse_scenario(
        'name = "lazy"\nsites = ["a", "b", "c"]\n[random]\nfaults = ["delay"]\n'
        "hold_min = 1.0\nhold_max = 1.5\n"
        '[[workloads]]\nname = "ledger"\nprimary = "a"\nstandbys = ["b", "c"]\n'
    )
    duration = 15.0
    workdir = tmp_path / "run"
    sim = Simulation(
        scenario,
        workdir,
        schedule=RandomSchedule(scenario, 5, duration),
        console=Console(quiet=True),
        live=False,
    )
    result = sim.run()
    assert_nothing_left(workdir)
    assert result.ok, (result.violations, result.error, result.leftovers)
    faults = [e for e in result.events if e.incarnation == "sim" and e.kind == "delay"]
    rounds = [e for e in result.events if e.incarnation == "sim" and e.kind == "wait-ok"]
    assert len(faults) == len(rounds) >= 2
    assert faults[-1].mono < sim.t0 + duration  # each round began while time remained
    assert rounds[-1].mono >= sim.t0 + duration  # and rounds went on until it was used up
    assert rounds[-2].mono < sim.t0 + duration
    (scanner,) = FakeScanner.made
    assert scanner.path == workdir.resolve() / "scans.jsonl" and scanner.calls == ["start", "stop"]
    assert set(scanner.containments) == {(s, "ledger") for s in "abc"}
    assert scanner.containments[("a", "ledger")].startswith("a.")


def test_a_workload_a_standby_won_at_boot_is_moved_home_not_restarted(tmp_path: Path) -> None:
    """At boot a standby can win the race (its primary's agent started late: an edge after
    the cores). The setup then moves it home as an operator would, instead of starting the
    whole mesh afresh (a minute of a CI run, each time)."""
    scenario = parse_scenario(
        'name = "home"\nsites = ["a", "b", "c"]\n'
        '[[workloads]]\nname = "ledger"\nprimary = "a"\nstandbys = ["b", "c"]\n'
    )
    workdir = tmp_path / "run"
    sim = Simulation(scenario, workdir, console=Console(quiet=True), live=False)
    try:
        sim._setup()
        observer = sim.observer
        assert observer is not None
        assert sim.executor.execute(Move(workload="ledger", to="b"))  # as if b had won at boot
        assert sim.wait(lambda: runners(observer.snapshots(), "ledger") == {"b"}, 30, "on b")
        assert sim._move_home()
        assert sim.wait(sim._on_primaries, 30, "home")
    finally:
        leftovers, problem = sim._cleanup()
    assert (leftovers, problem) == ([], "")
    assert_nothing_left(workdir)
    said = [e.reason for e in sim.faults if e.kind == "setup-move"]
    assert said == ["ledger runs on b: home to a"], said
