"""The report and the live view render a synthetic run: timelines, faults, violations."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from harmony.sim.checks import evaluate
from harmony.sim.live import LiveView, step_label
from harmony.sim.report import print_report, render_html
from harmony.sim.result import SimResult
from harmony.sim.scenario import parse_scenario

from .histories import fault, history, run

SCENARIO = parse_scenario(
    'name = "demo"\nproves = "a demo"\nsites = ["a", "b", "c"]\n'
    '[[workloads]]\nname = "w"\nprimary = "a"\nstandbys = ["b", "c"]\n'
    '[[steps]]\nat = 1\ndo = "partition"\ngroups = [["a"], ["b", "c"]]\n'
    '[[steps]]\ndo = "heal"\n'
)


def result_with_overlap(tmp_path: Path) -> SimResult:
    events = history(
        run("a", 0, 12, token=1),
        fault(5, "partition", {"w": {"a": 0, "b,c": 1}}),
        run("b", 11, None, token=7),
        fault(20, "heal", {"w": {"a,b,c": 1}}),
    )
    violations, expected, recoveries = evaluate(events, SCENARIO, 30)
    return SimResult(
        SCENARIO, tmp_path, tmp_path / "h.jsonl", events, violations, recoveries, 0, 30, expected
    )


def test_terminal_report_shows_timeline_faults_and_violations(tmp_path: Path) -> None:
    out = io.StringIO()
    print_report(result_with_overlap(tmp_path), Console(file=out, width=120))
    text = out.getvalue()
    assert "FAIL" in text and "workload w" in text
    assert "█" in text and "!" in text  # active intervals and the violation mark
    assert "partition" in text and "absolute-consistency" in text
    assert "active on a and b at the same time" in text


def test_html_report_is_self_contained(tmp_path: Path) -> None:
    page = render_html(result_with_overlap(tmp_path))
    assert page.startswith("<!doctype html>") and "<svg" in page
    assert 'class="violation"' in page and 'class="fault"' in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_live_view_renders_steps_and_events() -> None:
    out = io.StringIO()
    view = LiveView(SCENARIO, SCENARIO.steps, Console(file=out, width=100), enabled=False)
    view.step_started(0)
    view.log("partition {a} | {b, c}")
    view.step_done(0, True)
    Console(file=out, width=100).print(view.render())
    text = out.getvalue()
    assert "partition groups=[['a'], ['b', 'c']]" in text
    assert step_label(SCENARIO.steps[1]) == "heal"
