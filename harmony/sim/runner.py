"""Run one scenario: start the sites, play the timeline, record every fault, check, clean up.

The runner owns the `World` (what it did to the mesh) and writes each fault into the
history the moment it injects it, with the desired state the fault implies (the steps
themselves are in `harmony.sim.steps`). Whatever happens — a bad step, an exception,
Ctrl-C — `run` stops every process it started before it returns, and then looks for strays;
a stray process fails the run.

Files it writes into the work directory: every site's config, log and data_dir (from the
backend), ``records/<site>.<workload>.jsonl`` and ``ledger.db`` (the copies' own ground
truth), ``scans.jsonl`` (the process scanner, when `harmony.sim.scanner` is there) and
``history.jsonl`` (every journal and every fault, merged).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console

from harmony import interrupts
from harmony.actors.journal import JournalEvent
from harmony.mesh.subjects import lease_stream
from harmony.sim import conditions
from harmony.sim.backend import Backend, ProcessBackend
from harmony.sim.checks import SIM, evaluate
from harmony.sim.disk import under_ci, unrunnable
from harmony.sim.history import merge, write_history
from harmony.sim.horizontal import slot_specs, spread_at_start
from harmony.sim.live import LiveView
from harmony.sim.observe import Observer, runners
from harmony.sim.randomized import RandomSchedule
from harmony.sim.result import SimResult
from harmony.sim.scan_hook import start_scanner, stop_scanner
from harmony.sim.scenario import Move, Scenario, Step
from harmony.sim.steps import StepError, Steps, refusal_problem
from harmony.sim.streams import StreamPlacement, leaf_core, stream_placement
from harmony.sim.truthfiles import truth_files
from harmony.sim.world import World, encode_expectations
from harmony.strategies.registry import uses_lease

T = TypeVar("T")
__all__ = ["Simulation", "StepError", "run_scenario", "under_ci", "unrunnable"]

REFUSE_WAIT = 30.0
"""How long a site expected to refuse start may take to exit."""
HOME_WAIT = 12.0
"""Seconds the workloads get to start on their primaries before the misplaced ones are
moved home (the normal start takes a few)."""


def make_backend(
    kind: str, scenario: Scenario, workdir: Path, log_level: str, truth: Path | None = None
) -> Backend:
    if kind == "containers":
        if scenario.cores:
            raise StepError("the containers backend runs no core-and-edge mesh: use processes")
        from harmony.sim.containers import ContainerBackend

        backend: Backend = ContainerBackend(scenario, workdir, log_level=log_level, truth=truth)
        return backend
    return ProcessBackend(scenario, workdir, log_level=log_level, truth=truth)


class Simulation:
    def __init__(
        self,
        scenario: Scenario,
        workdir: Path,
        *,
        steps: Sequence[Step] | None = None,
        schedule: RandomSchedule | None = None,
        backend: str = "processes",
        console: Console | None = None,
        live: bool = True,
        json_lines: bool = False,
        seed: int | None = None,
        log_level: str = "info",
        start_timeout: float = 90.0,
    ) -> None:
        self.scenario = scenario
        self.schedule = schedule
        given = steps if steps is not None else ([] if schedule else scenario.steps)
        self.steps = list(given)
        self.workdir = workdir.resolve()
        self.backend_kind = backend
        self.console = console or Console()
        self.seed = seed
        self.start_timeout = start_timeout
        self.log_level = log_level
        self.backend = make_backend(backend, scenario, self.workdir, log_level, self.workdir)
        self.world = World(
            scenario.all_sites,
            down=set(scenario.expect_refused),
            cores=set(scenario.cores),
            labels=dict(scenario.labels),
        )
        self.faults: list[JournalEvent] = []
        self.observer: Observer | None = None
        self.scanner: Any = None
        self.view = LiveView(
            scenario, self.steps, self.console, enabled=live, json_lines=json_lines
        )
        self.executor = Steps(self)
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
            ended = self.note("end", "", "checks end here; the shutdown follows").mono
            leftovers, problem = self._cleanup()
            error = error or problem
        sites = self.scenario.all_sites
        events = merge([self.backend.journal(s) for s in sites], self.faults)
        history = write_history(self.workdir / "history.jsonl", events)
        truth = truth_files(self.workdir)
        checked = evaluate(events, self.scenario, ended, truth, require_truth=True)
        return SimResult.checked(
            self.scenario,
            self.workdir,
            history,
            events,
            checked,
            started,
            ended,
            seed=self.seed,
            interrupted=interrupted,
            error=error,
            leftovers=leftovers,
        )

    def _cleanup(self) -> tuple[list[str], str]:
        """Stop everything, ignoring a second Ctrl-C while doing so: (strays, problem)."""
        main = threading.current_thread() is threading.main_thread()
        old = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        problem = ""
        try:
            self.executor.close()
            if self.observer is not None:
                self.observer.close()
                self.observer = None
            try:
                self.backend.stop()
            except Exception as e:  # an unmount that failed: say so, still look for strays
                problem = f"cleanup: {type(e).__name__}: {e}"
            stop_scanner(self.scanner)
            self.scanner = None
            return self.backend.leftovers(), problem
        finally:
            if old is not None:
                signal.signal(signal.SIGINT, old)

    def _play(self) -> None:
        self._setup()
        self._refusals()
        self.t0 = time.monotonic()
        self.view.t0 = self.t0
        previous_end = self.t0
        for i, step in enumerate(self._timeline()):
            due = self.t0 + step.at if step.at is not None else previous_end + step.after
            total = f"/{len(self.steps)}" if self.schedule is None else ""
            self.view.status(f"step {i + 1}{total} at +{due - self.t0:.1f} s")
            self.sleep(max(0.0, due - time.monotonic()))
            self.view.step_started(i)
            self._bound = step.bound
            ok = self.executor.execute(step)
            self.view.step_done(i, ok)
            previous_end = time.monotonic()
        self.view.status("final: waiting for the desired state")
        bound = self.scenario.checks.recovery_bound
        settle = self.scenario.checks.settle
        if not self.wait(self._settled(settle), bound + settle, "desired state at the end"):
            self.note("wait-failed", "", f"desired state not reached {bound:g} s after the end")
        self.view.status("stopping")

    def _timeline(self) -> Iterator[Step]:
        """The scenario's steps, or random rounds drawn while the duration lasts."""
        if self.schedule is None:
            yield from self.steps
            return
        for step in self.schedule.steps():
            self.steps.append(step)
            self.view.add_step(step)
            yield step

    def _setup(self, attempts: int = 3) -> None:
        """Start the mesh and wait until every workload runs on its primary.

        Scenarios are written for that start ("kill the primary"). A site that boots much
        later than the others can be counted silent before it was ever heard from, and a
        standby then takes the lease first. Such a workload is moved home (`_move_home`);
        if that does not place them either, the mesh is started afresh (a new work
        sub-directory), up to `attempts` times.
        """
        bound = self.scenario.checks.recovery_bound
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                self._teardown(attempt - 1)
                sub = self.workdir / f"attempt-{attempt}"
                self.backend = make_backend(
                    self.backend_kind, self.scenario, sub, self.log_level, self.workdir
                )
            self.view.status(f"starting sites (attempt {attempt})")
            self.scanner = start_scanner(self.workdir, self.backend.containments())
            self.backend.start(self.start_timeout)
            self.observer = Observer(
                self.scenario.mesh_name,
                self.scenario.all_sites,
                self.backend.client_url,
                identity=self.backend.identity(),
            ).start()
            self.view.snapshots = self.observer.snapshots
            placement = self.wait(self._placement, 30, "lease stream placement")
            if placement is not None:
                self.world.stream_peers = set(placement.peers)
            self.view.status("waiting for every workload to run on its primary")
            if self.wait(self._on_primaries, min(bound, HOME_WAIT), "initial placement"):
                return
            self._move_home()
            if self.wait(self._on_primaries, bound, "initial placement"):
                return
            state = conditions.state_line(self.observer.snapshots(), self.scenario.workloads)
            self.note("setup-retry", "", f"attempt {attempt}: not on the primaries: {state}")
        raise StepError(f"workloads not on their primaries after {attempts} starts")

    def _move_home(self) -> bool:
        """Each workload that runs once, but not on its primary (a standby won the race at
        boot: its primary's agent started late, as an edge after the cores), is moved
        home the way an operator would: much cheaper than starting the mesh afresh. True if
        a move was accepted."""
        assert self.observer is not None
        snaps = self.observer.snapshots()
        refused = set(self.scenario.expect_refused)
        slots = {s.name for h in self.scenario.horizontal for s in slot_specs(h)}
        moved = False
        for w in self.scenario.workloads:
            first = next(s for s in [w.primary, *w.standbys] if s not in refused)
            running = runners(snaps, w.name)
            if w.name not in slots and len(running) == 1 and running != {first}:
                self.note("setup-move", w.name, f"{w.name} runs on {min(running)}: home to {first}")
                moved = self.executor.execute(Move(workload=w.name, to=first)) or moved
        return moved

    def _on_primaries(self) -> bool:
        """Every workload runs on its primary (its first site not expected to refuse); the
        slots of a horizontal workload run spread, one copy each."""
        assert self.observer is not None
        snaps = self.observer.snapshots()
        refused = set(self.scenario.expect_refused)
        slots = {s.name for h in self.scenario.horizontal for s in slot_specs(h)}
        if not spread_at_start(self.scenario, {w: runners(snaps, w) for w in slots}):
            return False
        for w in self.scenario.workloads:
            if w.name in slots:
                continue  # a slot: spread, whichever site won its lease
            first = next(s for s in [w.primary, *w.standbys] if s not in refused)
            if runners(snaps, w.name) != {first}:
                return False
        return True

    def _refusals(self) -> None:
        """Start each site that must refuse to start; one that runs instead is a failed
        wait (and from then on a site like any other)."""
        base = self.scenario.timing_values().lease_ttl
        for site in self.scenario.expect_refused:
            own = self.scenario.timing_values(site).lease_ttl
            self.view.status(f"starting {site}: it must refuse (lease_ttl {own:g} vs {base:g})")
            at = time.monotonic()
            code = self.backend.start_refused(site, REFUSE_WAIT)
            problem = refusal_problem(code, self.backend.log_text(site), own, base)
            if not problem:
                self.fault("site-refused", site, f"exit 2: lease_ttl {own:g} vs {base:g}", at)
                continue
            self.note("wait-failed", "", f"site {site} was not refused at start: {problem}")
            if code is None:
                self.world.down.discard(site)
                self.fault("site-restarted", site, "joined although its timings disagree", at)

    def _teardown(self, attempt: int) -> None:
        if self.observer is not None:
            self.observer.close()
            self.observer = None
        self.backend.stop()
        stop_scanner(self.scanner)
        self.scanner = None
        stray = self.backend.leftovers()
        if stray:
            raise StepError(f"processes left behind by a failed start: {stray}")
        # The ground truth of a failed start is not the run's: keep it aside.
        aside = self.workdir / f"attempt-{attempt}-truth"
        for name in ("records", "ledger.db", "ledger.db-wal", "ledger.db-shm", "scans.jsonl"):
            with contextlib.suppress(FileNotFoundError):
                aside.mkdir(exist_ok=True)
                (self.workdir / name).rename(aside / name)

    # ------------------------------------------------------------------ helpers
    def _placement(self) -> StreamPlacement | None:
        """Where the first exclusive workload's lease stream is (each such workload has one,
        led by its holder's server): `@leader` is its leader. None without one."""
        exclusive = [w.name for w in self.scenario.workloads if uses_lease(w.strategy)]
        if not exclusive:
            return None
        up = [s for s in self.scenario.all_sites if s not in self.world.down]
        servers = [(s, self.backend.http_url(s)) for s in up]
        return stream_placement(servers, lease_stream(self.scenario.mesh_name, exclusive[0]))

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

    def wait(self, cond: Callable[[], T], timeout: float, what: str) -> T | None:
        """Poll `cond` until truthy or `timeout`; keeps the live view fresh meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            interrupts.check()
            self.executor.tick()
            result = cond()
            if result:
                return result
            now = time.monotonic()
            if now >= deadline:
                return None
            self.view.refresh()
            time.sleep(min(0.1, deadline - now))

    def sleep(self, seconds: float) -> None:
        self.wait(lambda: False, seconds, "")

    def _record(self, ev: JournalEvent, line: str) -> JournalEvent:
        self.faults.append(ev)
        self.view.log(line)
        return ev

    def note(self, kind: str, workload: str, reason: str, **detail: str) -> JournalEvent:
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
        return self._record(ev, f"{kind}: {reason}")

    def fault(
        self, kind: str, site: str, reason: str, at: float | None = None, **detail: str
    ) -> None:
        """A fault: recorded with the desired state it implies (see `world.World.expect`)
        and any `detail` (e.g. ``what`` of a freeze)."""
        exp = self.world.expectations(self.scenario.workloads)
        ev = JournalEvent(
            site=site,
            workload=detail.pop("workload", ""),
            kind=kind,
            reason=reason,
            mono=at if at is not None else time.monotonic(),
            wall=time.time(),
            incarnation=SIM,
            detail={**detail, "expect": encode_expectations(exp)},
        )
        if self._bound is not None:
            ev.detail["bound"] = f"{self._bound:g}"
        self._record(ev, f"{kind} {site} {reason}".replace("  ", " "))

    def resolve(self, ref: str) -> str:
        if ref == "@leader":
            placement = self.wait(self._placement, 20, "stream leader")
            if placement is None:
                raise StepError("no leader of the lease stream within 20 s")
            return placement.leader
        if ref.startswith("@leaf:"):
            edge = ref.removeprefix("@leaf:")
            url = self.backend.http_url(edge)
            core = self.wait(lambda: leaf_core(url), 20, "leaf link")
            if not core:
                raise StepError(f"{edge}'s server has no leaf link to a core within 20 s")
            return core
        if ref.startswith("@runner:"):
            name = ref.removeprefix("@runner:")
            assert self.observer is not None
            obs = self.observer
            found = self.wait(lambda: sorted(runners(obs.snapshots(), name)), 20, "runner")
            if not found:
                raise StepError(f"{name} runs nowhere: no site for {ref}")
            return found[0]
        return ref


def run_scenario(scenario: Scenario, workdir: Path, **kw: object) -> SimResult:
    with contextlib.suppress(FileExistsError):
        workdir.mkdir(parents=True)
    return Simulation(scenario, workdir, **kw).run()  # type: ignore[arg-type]
