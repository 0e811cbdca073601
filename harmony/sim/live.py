"""The live progress view of a running simulation (Rich): steps, recent events, placements.

Redrawn by the runner's wait loop (no thread of its own), at most a few times a second.
Disabled (e.g. in tests or when stdout is not a terminal) it prints one line per event; with
`json_lines`, one JSON object per line on stdout instead (`harmony.logs.json_line`'s names).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from types import TracebackType

import msgspec
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from harmony.actors.messages import Snapshot
from harmony.logs import json_line
from harmony.sim.conditions import state_line
from harmony.sim.scenario import Scenario, Step

MARK = {"pending": ("·", "dim"), "running": ("▶", "yellow"), "ok": ("✓", "green")}
MARK["failed"] = ("✗", "bold red")


def step_label(step: Step) -> str:
    """`partition groups=[['a'], ['b', 'c']]`: the step as its TOML would say it."""
    data = msgspec.to_builtins(step)
    kind = data.pop("do", type(step).__name__.lower())
    for k in ("at", "after", "note"):
        data.pop(k, None)
    args = " ".join(f"{k}={v}" for k, v in data.items() if v not in ([], None, "", False))
    return f"{kind} {args}".strip() + (f"  — {step.note}" if step.note else "")


class LiveView:
    def __init__(
        self,
        scenario: Scenario,
        steps: Sequence[Step],
        console: Console,
        enabled: bool = True,
        json_lines: bool = False,
    ) -> None:
        self.json_lines = json_lines
        enabled = enabled and not json_lines
        self.scenario = scenario
        self.steps = list(steps)
        self.console = console
        self.enabled = enabled
        self.state = ["pending"] * len(self.steps)
        self.events: list[str] = []
        self.text = ""
        self.t0 = 0.0
        self.started = time.monotonic()
        self.snapshots: Callable[[], dict[str, Snapshot]] = dict
        self._live: Live | None = None
        self._drawn = 0.0

    def __enter__(self) -> LiveView:
        if self.enabled:
            self._live = Live(
                self.render(), console=self.console, auto_refresh=False, transient=False
            )
            self._live.__enter__()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.update(self.render(), refresh=True)
            self._live.__exit__(t, e, tb)
            self._live = None

    def _elapsed(self) -> str:
        base = self.t0 or self.started
        sign = "+" if self.t0 else "setup "
        return f"{sign}{time.monotonic() - base:.1f} s"

    def emit(self, event: str, message: str, **fields: object) -> None:
        """A JSON line on stdout (json_lines only): the run's own events, for machines."""
        if self.json_lines:
            elapsed = round(time.monotonic() - (self.t0 or self.started), 3)
            line = json_line(event, message, scenario=self.scenario.name, elapsed=elapsed, **fields)
            print(line, flush=True)

    def status(self, text: str) -> None:
        self.text = text
        self.emit("sim-status", text)
        self.refresh(force=True)

    def log(self, line: str) -> None:
        stamped = f"{self._elapsed():>10}  {line}"
        self.events.append(stamped)
        if self.json_lines:
            self.emit("sim-event", line)
        elif not self.enabled:
            self.console.print(stamped, highlight=False)
        self.refresh(force=True)

    def add_step(self, step: Step) -> None:
        """A step drawn while the run goes on (random mode)."""
        self.steps.append(step)
        self.state.append("pending")

    def step_started(self, i: int) -> None:
        self.state[i] = "running"
        if self.json_lines:
            self.emit("sim-step", step_label(self.steps[i]), step=i + 1)
        elif not self.enabled:
            self.console.print(f"{self._elapsed():>10}  step {i + 1}: {step_label(self.steps[i])}")
        self.refresh(force=True)

    def step_done(self, i: int, ok: bool) -> None:
        self.state[i] = "ok" if ok else "failed"
        self.emit("sim-step-done", "ok" if ok else "failed", step=i + 1, ok=ok)
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        if self._live is None:
            return
        now = time.monotonic()
        if force or now - self._drawn >= 0.25:
            self._drawn = now
            self._live.update(self.render(), refresh=True)

    def render(self) -> RenderableType:
        head = Text.assemble(
            ("harmony sim ", "bold"),
            (self.scenario.name, "bold cyan"),
            f"  {self._elapsed()}  ",
            (self.text, "yellow"),
        )
        table = Table(box=None, show_header=False, padding=(0, 1))
        for i, step in enumerate(self.steps):
            mark, style = MARK[self.state[i]]
            when = f"at {step.at:g}" if step.at is not None else f"+{step.after:g}"
            table.add_row(Text(mark, style=style), Text(when, style="dim"), step_label(step))
        placed = Text("now: " + state_line(self.snapshots(), self.scenario.workloads), "green")
        recent = Text("\n".join(self.events[-6:]), style="dim")
        return Group(head, table, placed, recent)
