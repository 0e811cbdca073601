"""`harmony sim`: run chaos scenarios on real processes and check what happened.

    harmony sim run FILE [--seed S --duration D] [--report out.html] [--backend ...]
    harmony sim check HISTORY.jsonl --scenario FILE      re-check a recorded history
    harmony sim suite scenarios/ [--soak FILE --seed S --duration D]   the whole library

Exit codes: 0 every check passed; 1 a violation, a failed step, a stray process or a
crash; 2 a bad scenario file or bad usage (nothing was started); 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from harmony import interrupts
from harmony.logs import LOG_FORMAT_ENV, add_log_format_argument, json_line

if TYPE_CHECKING:
    from rich.console import Console

    from harmony.sim.scenario import Scenario

EXIT_OK, EXIT_VIOLATION, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
BACKENDS = ("processes", "containers")
"""Where the sites' servers run (see `harmony.sim.runner.make_backend`)."""


def add_sim_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `harmony sim` and its subcommands."""
    p = sub.add_parser(
        "sim",
        help="chaos simulations: real sites, faults on a timeline, checked histories",
        description="Run a scenario of faults against a mesh of real sites on this machine, "
        "merge every site's journal into one history and check it. Exit 0 only when every "
        "check passed, 1 on a violation, 2 on a bad scenario, 130 when interrupted.",
    )
    simsub = p.add_subparsers(dest="sim_command", metavar="SUBCOMMAND")
    r = simsub.add_parser("run", help="run a scenario file", description=run_doc())
    r.add_argument("file", help="scenario TOML file (see scenarios/)")
    r.add_argument("--seed", type=int, help="random mode: draw the faults from this seed")
    r.add_argument("--duration", type=float, help="random mode: seconds of faults to draw")
    r.add_argument("--report", help="write an HTML report here")
    r.add_argument("--backend", choices=BACKENDS, default=BACKENDS[0])
    r.add_argument("--dir", help="work directory (default: a new temporary one, kept)")
    r.add_argument("--no-live", action="store_true", help="plain lines instead of a live view")
    r.add_argument("--log-level", default="info", help="the agents' log level")
    add_log_format_argument(r)
    r.set_defaults(fn=cmd_run)
    c = simsub.add_parser("check", help="check a recorded history file again")
    c.add_argument("history", help="history.jsonl written by `harmony sim run`")
    c.add_argument("--scenario", required=True, help="the scenario it came from")
    c.add_argument("--report", help="write an HTML report here")
    c.set_defaults(fn=cmd_check)
    su = simsub.add_parser(
        "suite",
        help="run every scenario of a directory, then a random soak",
        description="Run each scenario file (or every *.toml of a directory) on a fresh "
        "mesh, one after the other, then, with --duration, a random-mode soak drawn from "
        "--seed on the --soak scenario. Reports and histories go to --out. Exit 0 only "
        "when every run passed.",
    )
    su.add_argument("paths", nargs="+", help="scenario files or directories")
    su.add_argument("--out", default="chaos-results", help="where reports go")
    su.add_argument("--soak", default="", help="the scenario random mode draws on")
    su.add_argument("--seed", type=int, default=0, help="seed of the soak")
    su.add_argument("--duration", type=float, default=0.0, help="soak seconds (0: none)")
    su.add_argument("--backend", choices=BACKENDS, default=BACKENDS[0])
    su.set_defaults(fn=cmd_suite)
    p.set_defaults(fn=lambda _a: (p.print_help(), EXIT_USAGE)[1])


def run_doc() -> str:
    return (
        "Start every site of the scenario as real processes (agent + nats-server), play its "
        "timeline of faults, then stop everything and check the merged history. With "
        "--seed and --duration the timeline is drawn at random instead, one round of faults "
        "after the other until the duration is used up (same seed, same sequence of "
        "rounds). A scenario this machine cannot run (a tmpfs mount without root) is "
        "skipped with its reason, or fails under CI=true. The history, logs and configs "
        "stay in the work directory."
    )


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from harmony.sim.randomized import RandomSchedule
    from harmony.sim.report import print_report, write_html
    from harmony.sim.runner import run_scenario, under_ci, unrunnable

    json_lines = args.log_format == "json"
    # JSON: one object a line on stdout, for machines; the human report goes to stderr.
    console = Console(stderr=json_lines)
    scenario = _load(args.file, console)
    if scenario is None:
        return EXIT_USAGE
    os.environ[LOG_FORMAT_ENV] = args.log_format  # the agents this run starts inherit it
    if (args.seed is None) != (args.duration is None):
        console.print("[red]random mode needs both --seed and --duration[/]")
        return EXIT_USAGE
    schedule = None
    if args.seed is not None:
        schedule = RandomSchedule(scenario, args.seed, args.duration)
        kinds = ", ".join(schedule.kinds)
        console.print(
            f"random mode: seed [bold]{args.seed}[/], rounds drawn for {args.duration:g} s "
            f"from: {kinds}"
        )
    reason = unrunnable(scenario)
    if reason:
        if under_ci():
            console.print(f"[red]cannot run {scenario.name} (and CI=true):[/] {reason}")
            return EXIT_VIOLATION
        console.print(f"[yellow]SKIPPED {scenario.name}:[/] {reason}")
        return EXIT_OK
    if args.backend == "containers":
        from harmony.sim.containers import unavailable_reason

        reason = unavailable_reason(scenario, schedule.sample() if schedule else None)
        if reason:
            console.print(f"[red]--backend containers:[/] {reason}")
            return EXIT_USAGE
    workdir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="harmony-sim-"))
    console.print(f"scenario [bold]{scenario.name}[/]: work directory {workdir}")
    interrupts.install()
    result = run_scenario(
        scenario,
        workdir,
        schedule=schedule,
        backend=args.backend,
        console=console,
        live=not args.no_live and console.is_terminal,
        json_lines=json_lines,
        seed=args.seed,
        log_level=args.log_level,
    )
    print_report(result, console)
    if json_lines:
        verdict = "passed" if result.ok else "failed"
        print(json_line("sim-result", verdict, scenario=scenario.name, ok=result.ok), flush=True)
    if args.report:
        path = write_html(result, Path(args.report))
        console.print(f"report: {path}")
    if schedule is not None:
        console.print(
            f"seed {args.seed}: {schedule.rounds} rounds "
            f"(rerun with --seed {args.seed} for the same sequence)"
        )
    if result.interrupted or interrupts.requested() is not None:
        return EXIT_INTERRUPTED
    return EXIT_OK if result.ok else EXIT_VIOLATION


def cmd_suite(args: argparse.Namespace) -> int:
    from rich.console import Console

    from harmony.sim.suite import run_suite

    files: list[Path] = []
    for p in map(Path, args.paths):
        files += sorted(p.glob("*.toml")) if p.is_dir() else [p]
    soak = Path(args.soak) if args.soak else None
    console = Console()
    console.print(f"{len(files)} scenarios" + (f", soak seed {args.seed}" if soak else ""))
    interrupts.install()
    outcomes = run_suite(
        files, Path(args.out), console, soak, args.seed, args.duration, args.backend
    )
    if interrupts.requested() is not None:
        return EXIT_INTERRUPTED
    if soak is not None and args.duration:
        console.print(f"soak seed {args.seed}: rerun it with --seed {args.seed}")
    return EXIT_OK if outcomes and all(o.ok for o in outcomes) else EXIT_VIOLATION


def cmd_check(args: argparse.Namespace) -> int:
    from rich.console import Console

    from harmony.actors.journal import read_journal
    from harmony.sim.checks import evaluate
    from harmony.sim.report import print_report, write_html
    from harmony.sim.result import SimResult
    from harmony.sim.truthfiles import truth_files

    console = Console()
    scenario = _load(args.scenario, console)
    if scenario is None:
        return EXIT_USAGE
    path = Path(args.history)
    if not path.is_file():
        console.print(f"[red]no history file {path}[/]")
        return EXIT_USAGE
    events = read_journal(path)
    ends = [e.mono for e in events if e.incarnation == "sim" and e.kind == "end"]
    horizon = ends[-1] if ends else max((e.mono for e in events), default=time.monotonic())
    checked = evaluate(events, scenario, horizon, truth_files(path.parent))
    start = min((e.mono for e in events), default=horizon)
    result = SimResult.checked(scenario, path.parent, path, events, checked, start, horizon)
    print_report(result, console)
    if args.report:
        console.print(f"report: {write_html(result, Path(args.report))}")
    return EXIT_OK if result.ok else EXIT_VIOLATION


def _load(file: str, console: Console) -> Scenario | None:
    """The scenario in `file`, or None once the reason it was refused is printed."""
    from harmony.sim.scenario_file import ScenarioError, load_scenario

    try:
        return load_scenario(file)
    except ScenarioError as e:
        console.print(f"[red]bad scenario:[/] {e}", highlight=False)
        return None


def main(argv: list[str] | None = None) -> int:
    """`python -m harmony.sim.cli run FILE`: the same as `harmony sim run FILE`."""
    parser = argparse.ArgumentParser(prog="harmony")
    add_sim_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sim", *(argv if argv is not None else sys.argv[1:])])
    try:
        rc: int = args.fn(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return rc


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
