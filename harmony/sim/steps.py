"""Carrying out one step of a timeline on the mesh, and recording it as a fault.

Each fault is written into the history the moment it is injected, with the desired state it
implies (`Simulation.fault`); waits and notes carry none. Kept apart from the runner, which
owns the run's lifecycle (start, play, clean up), so that each step reads on its own.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable, Sequence
from typing import Never, NoReturn, Protocol, TypeVar

from harmony.actors.journal import JournalEvent
from harmony.actors.messages import CommandResult, MoveWorkload
from harmony.mesh import subjects
from harmony.mesh.remote import RemoteRef
from harmony.sim import conditions, scenario
from harmony.sim.backend import Backend
from harmony.sim.observe import Observer, runners
from harmony.sim.scenario import Scenario, Step
from harmony.sim.world import World, link_pairs, partition_cuts

T = TypeVar("T")

MOVE_REASON = "operator (harmony sim)"
ASK_TIMEOUT = 5.0


class StepError(RuntimeError):
    """A step could not be carried out (e.g. no stream leader to kill)."""


class Run(Protocol):
    """What a step needs of the run it belongs to (`runner.Simulation` is one): the steps
    act on its backend and world and record through it, never owning the run."""

    scenario: Scenario
    backend: Backend
    world: World
    observer: Observer | None
    start_timeout: float

    def fault(
        self, kind: str, site: str, reason: str, at: float | None = None, **detail: str
    ) -> None: ...
    def note(self, kind: str, workload: str, reason: str, **detail: str) -> JournalEvent: ...
    def resolve(self, ref: str) -> str: ...
    def sleep(self, seconds: float) -> None: ...
    def wait(self, cond: Callable[[], T], timeout: float, what: str) -> T | None: ...


class Steps:
    """Runs steps for one `Simulation`; holds what is due later (a flag's `hold`)."""

    def __init__(self, sim: Run) -> None:
        self.sim = sim
        self.later: list[tuple[float, Callable[[], None]]] = []

    def tick(self) -> None:
        """Run what is due; the runner calls this from its wait loop (one thread: the
        world and the history are never touched concurrently)."""
        now = time.monotonic()
        due = [fn for t, fn in self.later if t <= now]
        self.later = [(t, fn) for t, fn in self.later if t > now]
        for fn in due:
            fn()

    def close(self) -> None:
        self.later = []

    def execute(self, step: Step) -> bool:
        """Carry out `step`; False when it did not do what it says (a failed wait, a
        refused move). Raises `StepError` when it cannot be attempted at all, or when
        there is no way to carry out its kind (never skipped)."""
        match step:
            case scenario.Partition():
                self._partition(step)
            case scenario.Heal():
                self._heal(step)
            case scenario.Flap():
                self._flap(step)
            case scenario.Kill():
                self._kill(step)
            case scenario.Restart():
                site = self.sim.resolve(step.site)
                self.sim.world.down.discard(site)
                self.sim.fault("site-restarted", site, "agent and nats-server")
                self.sim.backend.restart(site, self.sim.start_timeout)
            case scenario.Pause() | scenario.Resume():
                self._pause(step)
            case scenario.Freeze() | scenario.Thaw():
                self._freeze(step)
            case scenario.Flag() | scenario.Unflag():
                self._flag(step)
            case scenario.SetPrice():
                site = self.sim.resolve(step.site)
                self.sim.backend.set_price(site, step.price)
                self.sim.fault("price-set", site, f"price {step.price:g}")
            case scenario.Move():
                return self._move(step)
            case scenario.FillDisk() | scenario.FreeDisk():
                self._disk(step)
            case scenario.Delay() | scenario.Drop():
                self._degrade(step)
            case scenario.WaitUntil():
                return self._wait_step(step)
            case _:
                _unknown(step)
        return True

    # ------------------------------------------------------------------ one per kind
    def _partition(self, step: scenario.Partition) -> None:
        groups = self._groups(step.groups)
        self.sim.world.cut = partition_cuts(groups, step.one_way)
        label = " | ".join("{" + ", ".join(g) + "}" for g in groups)
        at = time.monotonic()
        self.sim.backend.set_cuts(self.sim.world.cut)
        self.sim.fault("partition", "", label + (" one-way" if step.one_way else ""), at)

    def _heal(self, step: scenario.Heal) -> None:
        sim, b, w = self.sim, self.sim.backend, self.sim.world
        at = time.monotonic()
        if step.links:
            pairs = link_pairs(step.links, sim.scenario.all_sites)
            w.cut -= pairs
            b.set_cuts(w.cut)
            b.set_delay(pairs, 0.0)
            b.set_drop(pairs, 0.0)
        else:
            w.cut.clear()
            b.heal_all()
        sim.fault("heal", "", links_label(step.links) or "all links", at)

    def _kill(self, step: scenario.Kill) -> None:
        sim, w = self.sim, self.sim.world
        site = sim.resolve(step.site)
        sig = getattr(signal, "SIG" + step.signal.upper().removeprefix("SIG"))
        at = time.monotonic()
        sim.backend.kill(site, step.what, sig)
        if step.what == "server":
            sim.fault("server-killed", site, f"nats-server SIG{step.signal}", at)
        else:
            w.down.add(site)
            w.paused.discard(site)
            sim.fault("site-killed", site, f"{step.what} SIG{step.signal}", at)

    def _pause(self, step: scenario.Pause | scenario.Resume) -> None:
        sim = self.sim
        site = sim.resolve(step.site)
        if isinstance(step, scenario.Pause):
            at = time.monotonic()
            sim.backend.pause(site)
            sim.world.paused.add(site)
            sim.fault("paused", site, "SIGSTOP agent", at)
            return
        sim.world.paused.discard(site)
        at = time.monotonic()
        sim.backend.resume(site)
        sim.fault("resumed", site, "SIGCONT agent", at)

    def _disk(self, step: scenario.FillDisk | scenario.FreeDisk) -> None:
        sim = self.sim
        if isinstance(step, scenario.FillDisk):
            at = time.monotonic()
            n = sim.backend.fill_disk(step.site)
            sim.fault("disk-filled", step.site, f"data_dir full ({n} bytes written)", at)
            return
        sim.backend.free_disk(step.site)
        sim.fault("disk-freed", step.site, "fill file removed")

    def _degrade(self, step: scenario.Delay | scenario.Drop) -> None:
        """A delay or a drop on `step.links` (all links when none are named)."""
        sim = self.sim
        pairs = link_pairs(step.links, sim.scenario.all_sites, step.one_way)
        where = links_label(step.links) or "all"
        at = time.monotonic()
        if isinstance(step, scenario.Delay):
            sim.backend.set_delay(pairs, step.seconds)
            sim.fault("delay", "", f"{step.seconds:g} s on {where}", at)
        else:
            sim.backend.set_drop(pairs, step.probability)
            sim.fault("drop", "", f"p={step.probability:g} on {where}", at)

    def _groups(self, groups: Sequence[Sequence[str]]) -> list[list[str]]:
        """Site references resolved; ``@rest``: every site no other group names."""
        sim = self.sim
        out = [[sim.resolve(s) for s in g if s != "@rest"] for g in groups]
        named = [s for g in out for s in g]
        if len(set(named)) != len(named):
            raise StepError(f"partition {list(groups)}: a site is in two groups ({out})")
        rest = [s for s in sim.scenario.all_sites if s not in named]
        return [rest if list(g) == ["@rest"] else r for g, r in zip(groups, out, strict=True)]

    def _flap(self, step: scenario.Flap) -> None:
        sim, w = self.sim, self.sim.world
        pairs = link_pairs(step.links, sim.scenario.all_sites)
        for n in range(step.times):
            w.cut |= pairs
            at = time.monotonic()
            sim.backend.set_cuts(w.cut)
            sim.fault("link-cut", "", f"{links_label(step.links)} (flap {n + 1}/{step.times})", at)
            sim.sleep(step.down)
            w.cut -= pairs
            at = time.monotonic()
            sim.backend.set_cuts(w.cut)
            sim.fault("heal", "", f"{links_label(step.links)} (flap {n + 1}/{step.times})", at)
            if n + 1 < step.times:
                sim.sleep(step.up)

    def _freeze(self, step: scenario.Freeze | scenario.Thaw) -> None:
        sim = self.sim
        site = sim.resolve(step.site)
        if isinstance(step, scenario.Freeze):
            at = time.monotonic()
            n = sim.backend.freeze(site, step.what)
            sim.world.paused.add(site)
            why = f"SIGSTOP {step.what} ({n} processes besides the agent's group)"
            sim.fault("site-frozen", site, why, at, what=step.what)
            return
        frozen = getattr(sim.backend, "frozen", {}).get(site)
        what = frozen.what if frozen is not None else ""
        sim.world.paused.discard(site)
        at = time.monotonic()
        sim.backend.thaw(site)
        sim.fault("site-thawed", site, f"SIGCONT {what}".strip(), at, what=what)

    def _flag(self, step: scenario.Flag | scenario.Unflag) -> None:
        """One event per site whose flag changed (``@all`` names every site)."""
        sim = self.sim
        sites = list(sim.scenario.sites) if step.site == "@all" else [sim.resolve(step.site)]
        if isinstance(step, scenario.Unflag):
            self._clear(sites, step.flag, "")
            return
        hold = step.hold
        for site in sites:
            if sim.backend.set_flag(site, step.flag, True):
                why = step.flag + (f" for {hold:g} s" if hold else "")
                sim.fault("flag-set", site, why, flag=step.flag)
        if hold:
            due = time.monotonic() + hold
            self.later.append((due, lambda: self._clear(sites, step.flag, f" after {hold:g} s")))

    def _clear(self, sites: list[str], flag: str, why: str) -> None:
        for site in sites:
            if self.sim.backend.set_flag(site, flag, False):
                self.sim.fault("flag-cleared", site, flag + why, flag=flag)

    def _move(self, step: scenario.Move) -> bool:
        sim = self.sim
        observer = sim.observer
        assert observer is not None
        running = sorted(runners(observer.snapshots(), step.workload))
        target = self._next_site(step.workload, running) if step.to == "@next" else step.to
        via = sim.resolve(step.via) if step.via else (running[0] if running else target)
        ref = RemoteRef(
            observer.conns[via],
            sim.scenario.mesh_name,
            via,
            f"agent/workload/{step.workload}",
            ASK_TIMEOUT,
            sender=subjects.OPERATOR,
        )
        at = time.monotonic()
        try:
            answer = ref.ask(MoveWorkload(target=target, reason=MOVE_REASON), ASK_TIMEOUT)
        except Exception as e:  # the answer is what we record, whatever it is
            answer = e
        ok = isinstance(answer, CommandResult) and answer.ok
        if isinstance(answer, CommandResult):
            said = f"{'done' if answer.ok else 'refused'}: {answer.detail}"
        else:
            said = f"{type(answer).__name__}: {answer}"
        why = f"{step.workload} to {target} (asked {via}): {said}"
        sim.fault("move", target, why, at, workload=step.workload, answered=str(ok).lower())
        return ok

    def _next_site(self, workload: str, running: list[str]) -> str:
        spec = next(w for w in self.sim.scenario.workloads if w.name == workload)
        out = self.sim.world.down | self.sim.world.paused | set(running)
        for site in [spec.primary, *spec.standbys]:
            if site not in out:
                return site
        raise StepError(f"move {workload} to @next: every site of its topology runs it or is down")

    def _wait_step(self, step: scenario.WaitUntil) -> bool:
        sim = self.sim
        assert sim.observer is not None
        obs, what = sim.observer, conditions.describe(step)
        started = time.monotonic()

        def check() -> bool:
            return conditions.holds(step, obs.snapshots(), sim.world, sim.scenario.workloads)

        if sim.wait(check, step.timeout, what):
            sim.note("wait-ok", step.workload, f"{what} after {time.monotonic() - started:.1f} s")
            return True
        state = conditions.state_line(obs.snapshots(), sim.scenario.workloads)
        sim.note("wait-failed", step.workload, f"not within {step.timeout:g} s: {what} ({state})")
        return False


def _unknown(step: Never) -> NoReturn:
    """Typed `Never`: mypy fails where a kind of `Step` has no case above."""
    raise StepError(f"no way to carry out a step of kind {type(step).__name__}")


def links_label(links: Sequence[Sequence[str]]) -> str:
    return ", ".join(f"{a}<->{b}" for a, b in links)


def refusal_problem(code: int | None, log: str, own: float, other: float) -> str:
    """ "" when a site refused to start as it must (exit 2, its log naming both lease_ttl
    values when they differ), else what it did instead."""
    if code is None:
        return "it started and kept running"
    if code != 2:
        return f"it exited with code {code}, not 2"
    if own == other:
        return ""
    lines = [line for line in log.splitlines() if "lease_ttl" in line or "max_age" in line]
    missing = [v for v in (own, other) if not any(_names(line, v) for line in lines)]
    if missing:
        values = " and ".join(f"{v:g}" for v in missing)
        return f"exit 2, but no log line about lease_ttl names {values}"
    return ""


def _names(line: str, value: float) -> bool:
    """Whether `line` mentions `value` as a number (6, 6.0, 6.00, but not 16 or 6.5)."""
    whole, _, frac = f"{value:g}".partition(".")
    pattern = rf"(?<![\d.]){re.escape(whole)}" + (rf"\.{frac}0*" if frac else r"(?:\.0+)?")
    return re.search(pattern + r"(?![\d.])", line) is not None
