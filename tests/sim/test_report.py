"""The report and the live view render a synthetic run: timelines, faults, violations."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console
from support.histories import fault, history, rec, run, ticking

from harmony.actors.journal import JournalEvent
from harmony.sim.checks import evaluate
from harmony.sim.live import LiveView, step_label
from harmony.sim.report import print_report, render_html
from harmony.sim.result import SimResult
from harmony.sim.scenario_file import parse_scenario
from harmony.sim.truthfiles import TruthFiles

from .test_checks import write_records

SCENARIO = parse_scenario(
    'name = "demo"\nproves = "a demo"\nsites = ["a", "b", "c"]\n'
    '[[workloads]]\nname = "w"\nprimary = "a"\nstandbys = ["b", "c"]\n'
    '[[steps]]\nat = 1\ndo = "partition"\ngroups = [["a"], ["b", "c"]]\n'
    '[[steps]]\ndo = "heal"\n'
)


def result(events: list[JournalEvent], truth: TruthFiles | None, tmp_path: Path) -> SimResult:
    c = evaluate(events, SCENARIO, 30, truth)
    return SimResult.checked(SCENARIO, tmp_path, tmp_path / "h.jsonl", events, c, 0, 30)


def result_with_overlap(tmp_path: Path) -> SimResult:
    """The journal says a stopped at 10 before b started at 11; a's records say 14."""
    events = history(
        run("a", 0, 10, token=1),
        fault(5, "partition", {"w": {"a": 0, "b,c": 1}}),
        run("b", 11, None, token=7),
        fault(20, "heal", {"w": {"a,b,c": 1}}),
        fault(22, "site-frozen", {"w": None}, site="b"),
        fault(24, "site-thawed", {"w": None}, site="b"),
    )
    records = [*ticking("a", 100, 0.3, 14, token=1), *ticking("b", 200, 11.2, 22, 7, end=None)]
    records += [rec(24.01, "b", "self-fenced", 200, 7), *ticking("c", 300, 23.5, 28, token=9)]
    return result(events, write_records(tmp_path, records), tmp_path)


def test_terminal_report_shows_timeline_faults_and_violations(tmp_path: Path) -> None:
    out = io.StringIO()
    print_report(result_with_overlap(tmp_path), Console(file=out, width=200))
    text = out.getvalue()
    assert "FAIL" in text and "workload w" in text
    assert "█" in text and "!" in text  # active intervals and the violation mark
    assert "partition" in text and "absolute-consistency" in text
    assert "active on a and b at the same time" in text
    assert "journal says a's copy (token 1) stopped at +10.0 s" in text  # the explanation
    assert "checked on: w records" in text
    assert "residual risk" in text and "resumed after its whole site was frozen" in text


def test_a_pass_on_the_journal_alone_says_so(tmp_path: Path) -> None:
    events = history(run("a", 0, None, token=1))
    out = io.StringIO()
    print_report(result(events, None, tmp_path), Console(file=out, width=200))
    text = out.getvalue()
    assert "PASS (journal only: w unproven)" in text
    assert "journal only (no ground truth)" in text


def test_html_report_is_self_contained(tmp_path: Path) -> None:
    page = render_html(result_with_overlap(tmp_path))
    assert page.startswith("<!doctype html>") and "<svg" in page
    assert 'class="violation"' in page and 'class="fault"' in page
    assert "class='journal'" in page and "residual risk" in page
    assert "journal says a&#x27;s copy (token 1) stopped" in page
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
