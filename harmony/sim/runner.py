"""Run one scenario: start the sites, play the timeline, record every fault, check, clean up.

The runner owns the `World` (what it did to the mesh) and writes each fault into the
history the moment it injects it, with the desired state the fault implies. Whatever
happens — a bad step, an exception, Ctrl-C — `run` stops every process it started before it
returns, and then looks for strays; a stray process fails the run.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from rich.console import Console

from harmony import interrupts
from harmony.actors.journal import JournalEvent
from harmony.sim import conditions
from harmony.sim.backend import Backend, ProcessBackend
from harmony.sim.checks import SIM, evaluate
from harmony.sim.history import merge, write_history
from harmony.sim.live import LiveView
from harmony.sim.observe import Observer, runners
from harmony.sim.result import SimResult
from harmony.sim.scenario import (
    Delay,
    Drop,
    Flap,
    Heal,
    Kill,
    Partition,
    Pause,
    Restart,
    Resume,
    Scenario,
    Step,
    WaitUntil,
)
from harmony.sim.streams import StreamPlacement, lease_stream, stream_placement
from harmony.sim.truthfiles import truth_files
from harmony.sim.world import World, encode_expectations, link_pairs, partition_cuts

T = TypeVar("T")


class StepError(RuntimeError):
    """A step could not be carried out (e.g. no stream leader to kill)."""


def make_backend(kind: str, scenario: Scenario, workdir: Path, log_level: str) -> Backend:
    if kind == "containers":
        from harmony.sim.containers import ContainerBackend

        backend: Backend = ContainerBackend(scenario, workdir, log_level=log_level)
        return backend
    return ProcessBackend(scenario, workdir, log_level=log_level)


class Simulation:
    def __init__(
        self,
        scenario: Scenario,
        workdir: Path,
        *,
        steps: Sequence[Step] | None = None,
        backend: str = "processes",
        console: Console | None = None,
        live: bool = True,
        seed: int | None = None,
        log_level: str = "info",
        start_timeout: float = 90.0,
    ) -> None:
        self.scenario = scenario
        self.steps = list(steps if steps is not None else scenario.steps)
        self.workdir = workdir.resolve()
        self.backend_kind = backend
        self.console = console or Console()
        self.seed = seed
        self.start_timeout = start_timeout
        self.log_level = log_level
        self.backend = make_backend(backend, scenario, self.workdir, log_level)
        self.world = World(scenario.all_sites)
        self.faults: list[JournalEvent] = []
        self.observer: Observer | None = None
        self.view = LiveView(scenario, self.steps, self.console, enabled=live)
        self.t0 = 0.0
        self._bound: float | None = None

    # ------------------------------------------------------------------ the run
    def run(self) -> SimResult:
        started = time.monotonic()
        interrupted, error = False, ""
        try:
            with self.view:
                self._play()
        except KeyboardInterrupt:
            interrupted = True
            self.console.print("[yellow]interrupted: stopping every process...[/]")
        except Exception as e:  # a failed start or step: still clean up and report
            error = f"{type(e).__name__}: {e}"
            self.console.print(f"[red]simulation failed:[/] {error}")
        finally:
            # A Ctrl-C whose KeyboardInterrupt was swallowed (raised inside a weakref
            # callback, say) still counts: the user asked to stop.
            interrupted = interrupted or interrupts.requested() is not None
            # Checks end here: what the shutdown itself stops is not an outage.
            ended = self._note("end", "", "checks end here; the shutdown follows").mono
            leftovers = self._cleanup()
        sites = self.scenario.all_sites
        events = merge([self.backend.journal(s) for s in sites], self.faults)
        history = write_history(self.workdir / "history.jsonl", events)
        checked = evaluate(events, self.scenario, ended, truth_files(self.workdir))
        return SimResult(
            self.scenario,
            self.workdir,
            history,
            events,
            checked.violations,
            checked.recoveries,
            started,
            ended,
            expected=checked.expected,
            residuals=checked.residuals,
            intervals=checked.intervals,
            sources=checked.sources,
            seed=self.seed,
            interrupted=interrupted,
            error=error,
            leftovers=leftovers,
        )

    def _cleanup(self) -> list[str]:
        """Stop everything, ignoring a second Ctrl-C while doing so."""
        main = threading.current_thread() is threading.main_thread()
        old = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            if self.observer is not None:
                self.observer.close()
                self.observer = None
            self.backend.stop()
            return self.backend.leftovers()
        finally:
            if old is not None:
                signal.signal(signal.SIGINT, old)

    def _play(self) -> None:
        self._setup()
        self.t0 = time.monotonic()
        self.view.t0 = self.t0
        previous_end = self.t0
        for i, step in enumerate(self.steps):
            due = self.t0 + step.at if step.at is not None else previous_end + step.after
            self.view.status(f"step {i + 1}/{len(self.steps)} at +{due - self.t0:.1f} s")
            self._wait(lambda: False, max(0.0, due - time.monotonic()), "")
            self.view.step_started(i)
            self._bound = step.bound
            ok = self._execute(i, step)
            self.view.step_done(i, ok)
            previous_end = time.monotonic()
        self.view.status("final: waiting for the desired state")
        bound = self.scenario.checks.recovery_bound
        settle = self.scenario.checks.settle
        if not self._wait(self._settled(settle), bound + settle, "desired state at the end"):
            self._note("wait-failed", "", f"desired state not reached {bound:g} s after the end")
        self.view.status("stopping")

    def _setup(self, attempts: int = 3) -> None:
        """Start the mesh and wait until every workload runs on its primary.

        Scenarios are written for that start ("kill the primary"). A site that boots much
        later than the others can be counted silent before it was ever heard from, and a
        standby then takes the lease first; the mesh is then started afresh (a new work
        sub-directory), up to `attempts` times.
        """
        bound = self.scenario.checks.recovery_bound
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                self._teardown()
                sub = self.workdir / f"attempt-{attempt}"
                self.backend = make_backend(self.backend_kind, self.scenario, sub, self.log_level)
            self.view.status(f"starting sites (attempt {attempt})")
            self.backend.start(self.start_timeout)
            self.observer = Observer(
                self.scenario.mesh_name, self.scenario.all_sites, self.backend.client_url
            ).start()
            self.view.snapshots = self.observer.snapshots
            placement = self._wait(self._placement, 30, "lease stream placement")
            if placement is not None:
                self.world.stream_peers = set(placement.peers)
            self.view.status("waiting for every workload to run on its primary")
            if self._wait(self._on_primaries, bound, "initial placement"):
                return
            state = conditions.state_line(self.observer.snapshots(), self.scenario.workloads)
            self._note("setup-retry", "", f"attempt {attempt}: not on the primaries: {state}")
        raise StepError(f"workloads not on their primaries after {attempts} starts")

    def _on_primaries(self) -> bool:
        assert self.observer is not None
        snaps = self.observer.snapshots()
        return all(runners(snaps, w.name) == {w.primary} for w in self.scenario.workloads)

    def _teardown(self) -> None:
        if self.observer is not None:
            self.observer.close()
            self.observer = None
        self.backend.stop()
        stray = self.backend.leftovers()
        if stray:
            raise StepError(f"processes left behind by a failed start: {stray}")

    # ------------------------------------------------------------------ helpers
    def _placement(self) -> StreamPlacement | None:
        up = [s for s in self.scenario.all_sites if s not in self.world.down]
        servers = [(s, self.backend.http_url(s)) for s in up]
        return stream_placement(servers, lease_stream(self.scenario.mesh_name))

    def _desired(self) -> bool:
        """Desired state, judged only when every up site answered (a missing snapshot may
        hide a running copy)."""
        assert self.observer is not None
        snaps = self.observer.snapshots()
        up = set(self.scenario.all_sites) - self.world.down - self.world.paused
        if not up <= set(snaps):
            return False
        return conditions.desired_holds(snaps, self.world, self.scenario.workloads)

    def _settled(self, hold: float) -> Callable[[], bool]:
        """`_desired`, continuously for `hold` seconds."""
        since: list[float] = []

        def check() -> bool:
            if not self._desired():
                since.clear()
                return False
            since[:] = since or [time.monotonic()]
            return time.monotonic() - since[0] >= hold

        return check

    def _wait(self, cond: Callable[[], T], timeout: float, what: str) -> T | None:
        """Poll `cond` until truthy or `timeout`; keeps the live view fresh meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            interrupts.check()
            result = cond()
            if result:
                return result
            now = time.monotonic()
            if now >= deadline:
                return None
            self.view.refresh()
            time.sleep(min(0.1, deadline - now))

    def _note(self, kind: str, workload: str, reason: str, **detail: str) -> JournalEvent:
        """A simulation event without a desired state (waits, notes)."""
        ev = JournalEvent(
            site="",
            workload=workload,
            kind=kind,
            reason=reason,
            mono=time.monotonic(),
            wall=time.time(),
            incarnation=SIM,
            detail=detail,
        )
        self.faults.append(ev)
        self.view.log(f"{kind}: {reason}")
        return ev

    def _fault(self, kind: str, site: str, reason: str, at: float | None = None) -> None:
        """A fault: recorded with the desired state it implies (see `world.World.expect`)."""
        exp = self.world.expectations(self.scenario.workloads)
        ev = JournalEvent(
            site=site,
            workload="",
            kind=kind,
            reason=reason,
            mono=at if at is not None else time.monotonic(),
            wall=time.time(),
            incarnation=SIM,
            detail={"expect": encode_expectations(exp)},
        )
        if self._bound is not None:
            ev.detail["bound"] = f"{self._bound:g}"
        self.faults.append(ev)
        self.view.log(f"{kind} {site} {reason}".replace("  ", " "))

    def _resolve(self, ref: str) -> str:
        if ref == "@leader":
            placement = self._wait(self._placement, 20, "stream leader")
            if placement is None:
                raise StepError("no leader of the lease stream within 20 s")
            return placement.leader
        if ref.startswith("@runner:"):
            name = ref.removeprefix("@runner:")
            assert self.observer is not None
            obs = self.observer
            found = self._wait(lambda: sorted(runners(obs.snapshots(), name)), 20, "runner")
            if not found:
                raise StepError(f"{name} runs nowhere: no site for {ref}")
            return found[0]
        return ref

    # ------------------------------------------------------------------ steps
    def _execute(self, i: int, step: Step) -> bool:
        b, w = self.backend, self.world
        names = self.scenario.all_sites
        if isinstance(step, Partition):
            w.cut = partition_cuts(step.groups, step.one_way)
            groups = " | ".join("{" + ", ".join(g) + "}" for g in step.groups)
            at = time.monotonic()
            b.set_cuts(w.cut)
            self._fault("partition", "", groups + (" one-way" if step.one_way else ""), at)
        elif isinstance(step, Heal):
            at = time.monotonic()
            if step.links:
                pairs = link_pairs(step.links, names)
                w.cut -= pairs
                b.set_cuts(w.cut)
                b.set_delay(pairs, 0.0)
                b.set_drop(pairs, 0.0)
            else:
                w.cut.clear()
                b.heal_all()
            self._fault("heal", "", _links(step.links) or "all links", at)
        elif isinstance(step, Flap):
            pairs = link_pairs(step.links, names)
            for n in range(step.times):
                w.cut |= pairs
                at = time.monotonic()
                b.set_cuts(w.cut)
                self._fault("link-cut", "", f"{_links(step.links)} (flap {n + 1}/{step.times})", at)
                self._wait(lambda: False, step.down, "")
                w.cut -= pairs
                at = time.monotonic()
                b.set_cuts(w.cut)
                self._fault("heal", "", f"{_links(step.links)} (flap {n + 1}/{step.times})", at)
                if n + 1 < step.times:
                    self._wait(lambda: False, step.up, "")
        elif isinstance(step, Kill):
            site = self._resolve(step.site)
            sig = getattr(signal, "SIG" + step.signal.upper().removeprefix("SIG"))
            at = time.monotonic()
            b.kill(site, step.what, sig)
            if step.what == "server":
                self._fault("server-killed", site, f"nats-server SIG{step.signal}", at)
            else:
                w.down.add(site)
                w.paused.discard(site)
                self._fault("site-killed", site, f"{step.what} SIG{step.signal}", at)
        elif isinstance(step, Restart):
            site = self._resolve(step.site)
            w.down.discard(site)
            self._fault("site-restarted", site, "agent and nats-server")
            b.restart(site, self.start_timeout)
        elif isinstance(step, Pause):
            site = self._resolve(step.site)
            at = time.monotonic()
            b.pause(site)
            w.paused.add(site)
            self._fault("paused", site, "SIGSTOP agent", at)
        elif isinstance(step, Resume):
            site = self._resolve(step.site)
            w.paused.discard(site)
            at = time.monotonic()
            b.resume(site)
            self._fault("resumed", site, "SIGCONT agent", at)
        elif isinstance(step, Delay):
            pairs = link_pairs(step.links, names, step.one_way)
            at = time.monotonic()
            b.set_delay(pairs, step.seconds)
            self._fault("delay", "", f"{step.seconds:g} s on {_links(step.links) or 'all'}", at)
        elif isinstance(step, Drop):
            pairs = link_pairs(step.links, names, step.one_way)
            at = time.monotonic()
            b.set_drop(pairs, step.probability)
            self._fault("drop", "", f"p={step.probability:g} on {_links(step.links) or 'all'}", at)
        elif isinstance(step, WaitUntil):
            return self._wait_step(step)
        return True

    def _wait_step(self, step: WaitUntil) -> bool:
        assert self.observer is not None
        obs, what = self.observer, conditions.describe(step)
        started = time.monotonic()

        def check() -> bool:
            return conditions.holds(step, obs.snapshots(), self.world, self.scenario.workloads)

        if self._wait(check, step.timeout, what):
            self._note("wait-ok", step.workload, f"{what} after {time.monotonic() - started:.1f} s")
            return True
        state = conditions.state_line(obs.snapshots(), self.scenario.workloads)
        self._note("wait-failed", step.workload, f"not within {step.timeout:g} s: {what} ({state})")
        return False


def _links(links: Sequence[Sequence[str]]) -> str:
    return ", ".join(f"{a}<->{b}" for a, b in links)


def run_scenario(scenario: Scenario, workdir: Path, **kw: object) -> SimResult:
    with contextlib.suppress(FileExistsError):
        workdir.mkdir(parents=True)
    return Simulation(scenario, workdir, **kw).run()  # type: ignore[arg-type]
