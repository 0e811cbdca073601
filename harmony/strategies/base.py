"""`FailoverStrategy`: the sans-I/O step shared by all strategies.

``decision = strategy.step(decision.state, event, now)``: the actor feeds events in, carries
the commands out in order, and delivers a `Tick` at `decision.wake_at`. Each strategy lists
every event type it takes in its `folds` table (the rows every strategy shares are
`COMMON_FOLDS`), so an event class leads to its handler by plain search, and an event a
strategy does not take is an error (`UnknownEvent`), never a silent drop. Then the subclass
reads its rules from `tables`.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Final

from harmony.strategies import events as ev
from harmony.strategies.commands import (
    Command,
    FenceCopy,
    Promote,
    RecordEvent,
    StartCopy,
    StopCopy,
)
from harmony.strategies.names import StrategyName
from harmony.strategies.params import Params
from harmony.strategies.state import Decision, DriverView, Peer, WorkloadState
from harmony.strategies.tables import DRIVER_REPORTS, FENCE_RETRY, Act, PeerStatus, Phase
from harmony.strategies.topology import FailoverTopology

replace = dataclasses.replace

PEER_STATUS: Final[Mapping[type, PeerStatus]] = {
    ev.PeerAlive: PeerStatus.ALIVE,
    ev.PeerSuspect: PeerStatus.SUSPECT,
    ev.PeerSilent: PeerStatus.SILENT,
}
REPORT_KINDS: Final[Mapping[type, str]] = {  # driver reports, as `DRIVER_REPORTS` names them
    ev.WorkloadStarted: "started",
    ev.WorkloadStopped: "stopped",
    ev.WorkloadFenced: "fenced",
}

Fold = Callable[[Any, WorkloadState, Any, float, list[Command]], WorkloadState]
"""(strategy, state, event, now, out) -> state: how one event type folds into the state."""


class UnknownEvent(TypeError):
    """An event type the strategy does not take: the caller's bug, refused loudly."""


class FailoverStrategy(ABC):
    """One failover strategy, configured by `Params`; holds no per-site state itself."""

    name: ClassVar[StrategyName]
    abbreviation: ClassVar[str]
    """A short name for narrow displays (the TUI's tree)."""
    uses_lease: ClassVar[bool] = False
    """The workload runs under a lease (and so its tokened copies under a tether)."""
    announces_copies: ClassVar[bool] = False
    """Sites announce their running copies in heartbeats and reconcile on them."""
    folds: ClassVar[Mapping[type, Fold]]
    """Every event type the strategy takes -> how it folds it into the state."""

    def __init__(self, params: Params | None = None) -> None:
        self.params = params if params is not None else Params()

    def start(self, site: str, topology: FailoverTopology, now: float) -> Decision:
        """The first decision for `site` (call once when the workload supervisor starts)."""
        if site not in topology:
            raise ValueError(f"site {site!r} is not in the topology {topology.sites}")
        state = WorkloadState(
            site=site, topology=topology, booted_at=now, driver=self._boot_driver()
        )
        return self._evaluate(state, now, list(self._boot(state)))

    def step(self, state: WorkloadState, event: ev.Event, now: float) -> Decision:
        """Fold `event` in at time `now` and decide. Pure: same inputs, same decision.

        Raises `UnknownEvent` for an event type missing from `folds`."""
        fold = self.folds.get(type(event))
        if fold is None:
            raise UnknownEvent(f"{type(self).__name__} takes no {type(event).__name__} event")
        if state.done:
            return Decision(state)
        out: list[Command] = []
        return self._evaluate(fold(self, state, event, now, out), now, out)

    # -- for subclasses ------------------------------------------------------------------
    def _boot(self, state: WorkloadState) -> Iterable[Command]:
        return ()

    def _boot_driver(self) -> DriverView:
        """What the core assumes about this site's copy before any driver report."""
        return DriverView()

    @abstractmethod
    def _act(self, state: WorkloadState, now: float, out: list[Command]) -> WorkloadState:
        """Read the tables and append the commands they call for."""

    @abstractmethod
    def _wake_times(self, state: WorkloadState, now: float) -> Iterable[float | None]:
        """Times at which a rule may change its mind without any event."""

    def _moving(self, state: WorkloadState, out: list[Command]) -> WorkloadState:
        """An operator moved the workload to `state.moved_to`; the topology already says so."""
        return state

    def _copy_failed(self, state: WorkloadState, now: float, out: list[Command]) -> WorkloadState:
        """Our copy exited for good: cool down before running it here again."""
        return replace(state, cooldown_until=now + self.params.failed_cooldown)

    # -- shared machinery ----------------------------------------------------------------
    def _evaluate(self, state: WorkloadState, now: float, out: list[Command]) -> Decision:
        state = self._act(state, now, out)
        if state.shutting_down and state.driver.phase is Phase.STOPPED and self._released(state):
            state = replace(state, done=True)
            out.append(RecordEvent("shutdown-complete", "copy stopped and lease released"))
            return Decision(state, tuple(out))
        wake = min(
            (t for t in self._wake_times(state, now) if t is not None and t > now), default=None
        )
        return Decision(state, tuple(out), wake)

    def _released(self, state: WorkloadState) -> bool:
        return state.lease.revision is None and state.lease.pending is None

    # -- folds (the rows of `COMMON_FOLDS`) ------------------------------------------------
    def _unchanged(
        self, state: WorkloadState, event: ev.Event, now: float, out: list[Command]
    ) -> WorkloadState:
        """Nothing to fold: the rules decide again on the same facts (a `Tick`, say)."""
        return state

    def _peer(
        self, state: WorkloadState, event: ev.PeerEvent, now: float, out: list[Command]
    ) -> WorkloadState:
        status = PEER_STATUS[type(event)]
        old = state.peers.get(event.site)
        if event.site == state.site or (old is not None and old.status is status):
            return state
        peers = {**state.peers, event.site: Peer(status, now)}
        return replace(state, peers=MappingProxyType(peers))

    def _move(
        self, state: WorkloadState, event: ev.MoveRequested, now: float, out: list[Command]
    ) -> WorkloadState:
        if event.target not in state.topology:
            out.append(RecordEvent("move-refused", f"{event.target} is not in the topology"))
            return state
        if not state.eligible(event.target):
            why = state.barred[event.target]
            out.append(RecordEvent("move-refused", f"move to {event.target} refused: {why}"))
            return state
        out.append(RecordEvent("move", f"operator moves the workload to {event.target}"))
        topology = state.topology.preferring(event.target)
        return self._moving(replace(state, topology=topology, moved_to=event.target), out)

    def _barred(
        self, state: WorkloadState, event: ev.SitesBarred, now: float, out: list[Command]
    ) -> WorkloadState:
        """Which sites the geo constraints bar; this site barred leaves the workload."""
        was, why = state.refused, event.barred.get(state.site)
        if why != was:
            if why is not None:
                out.append(RecordEvent("geo-refused", why))
            else:
                out.append(RecordEvent("geo-admitted", f"this site may run it again ({was})"))
        return replace(state, barred=MappingProxyType(dict(event.barred)))

    def _shutdown(
        self, state: WorkloadState, event: ev.ShutdownRequested, now: float, out: list[Command]
    ) -> WorkloadState:
        if not state.shutting_down:
            out.append(RecordEvent("shutdown", "graceful shutdown requested"))
        return replace(state, shutting_down=True)

    def _reported(
        self, state: WorkloadState, event: ev.DriverEvent, now: float, out: list[Command]
    ) -> WorkloadState:
        return self._report(state, REPORT_KINDS[type(event)], now, out)

    def _unknown_reported(
        self, state: WorkloadState, event: ev.WorkloadUnknown, now: float, out: list[Command]
    ) -> WorkloadState:
        return self._unknown(state, event.reason, now, out)

    def _unknown(
        self, state: WorkloadState, reason: str, now: float, out: list[Command]
    ) -> WorkloadState:
        """The copy may still run. It is fenced (at once, then with backoff) until a driver
        confirms it down; meanwhile it counts as running: no release, no acquire, no start."""
        d = state.driver
        if DRIVER_REPORTS.get((d.phase, "unknown")) is None:
            return state
        retry = 0.0 if not d.fence_attempts else fence_backoff(d.fence_attempts)
        out.append(
            RecordEvent(
                "fence-unconfirmed",
                f"{reason}: the copy may still run; fencing until a driver confirms it down",
            )
        )
        driver = replace(d, phase=Phase.UNKNOWN, doubt=reason, fence_retry_at=now + retry)
        return replace(state, driver=driver)

    def _report(
        self, state: WorkloadState, kind: str, now: float, out: list[Command]
    ) -> WorkloadState:
        """A driver report (a fact) moves the phase as `DRIVER_REPORTS` says."""
        d = state.driver
        phase = DRIVER_REPORTS.get((d.phase, kind))
        if phase is None or phase is d.phase:
            return state
        if phase is Phase.STOPPED:
            state = replace(state, driver=DriverView())
            if d.unknown:
                out.append(RecordEvent("fence-confirmed", f"copy confirmed down ({d.doubt})"))
                if d.started_at is not None:  # our copy failed; a boot leftover did not
                    state = self._copy_failed(state, now, out)
            return state
        if d.unknown and phase is Phase.RUNNING:
            out.append(RecordEvent("copy-recovered", f"the copy reports running again ({d.doubt})"))
            return replace(state, driver=replace(d, phase=phase, doubt=None, fence_attempts=0))
        return replace(state, driver=replace(d, phase=phase))

    def _exited(
        self, state: WorkloadState, event: ev.WorkloadExited, now: float, out: list[Command]
    ) -> WorkloadState:
        was, doubted = state.driver.phase, state.driver.unknown
        kind = "restarting" if event.restarting else "exited"
        state = self._report(state, kind, now, out)
        if was in (Phase.STARTING, Phase.RUNNING):
            how = "the driver restarts it" if event.restarting else "not restarted"
            out.append(RecordEvent("copy-exited", f"copy exited (code {event.code}); {how}"))
            if state.driver.phase is Phase.STOPPED and not doubted:
                state = self._copy_failed(state, now, out)
        return state

    def _may_drive(self, state: WorkloadState, act: Act, now: float) -> bool:
        """A fence of a copy in an unknown state waits out its retry backoff."""
        d = state.driver
        return not (act is Act.FENCE and d.phase is Phase.UNKNOWN and now < d.fence_retry_at)

    def _fence_retry_at(self, state: WorkloadState) -> float | None:
        d = state.driver
        return d.fence_retry_at if d.phase is Phase.UNKNOWN else None

    @staticmethod
    def _drive(
        state: WorkloadState, act: Act, why: str, now: float, token: int | None = None
    ) -> tuple[WorkloadState, Command]:
        """The command for `act`, and the state with the phase moved optimistically."""
        d = state.driver
        cmd: Command
        match act:
            case Act.START_ACTIVE if token is not None:
                cmd = StartCopy(token, why)
                d = DriverView(Phase.STARTING, active=True, token=token, started_at=now)
            case Act.PROMOTE if token is not None:
                cmd = Promote(token, why)
                d = replace(d, active=True, token=token)
            case Act.START | Act.START_PASSIVE:
                cmd = StartCopy(None, why, passive=act is Act.START_PASSIVE)
                d = DriverView(Phase.STARTING, started_at=now)
            case Act.STOP:
                cmd = StopCopy(why)
                d = replace(d, phase=Phase.STOPPING)
            case Act.FENCE:
                cmd = FenceCopy(why)
                attempts = d.fence_attempts + 1 if d.unknown else 0
                d = replace(d, phase=Phase.FENCING, fence_attempts=attempts)
            case _:
                raise ValueError(f"cannot {act} without a token")
        return replace(state, driver=d), cmd


def fence_backoff(attempts: int) -> float:
    """Seconds before fence attempt `attempts` + 1 of a copy whose state is unknown."""
    return float(min(FENCE_RETRY["max"], FENCE_RETRY["base"] * 2 ** max(0, attempts - 1)))


COMMON_FOLDS: Final[Mapping[type, Fold]] = {
    # event                      fold
    ev.PeerAlive: FailoverStrategy._peer,
    ev.PeerSuspect: FailoverStrategy._peer,
    ev.PeerSilent: FailoverStrategy._peer,
    ev.MoveRequested: FailoverStrategy._move,
    ev.SitesBarred: FailoverStrategy._barred,
    ev.ShutdownRequested: FailoverStrategy._shutdown,
    ev.WorkloadStarted: FailoverStrategy._reported,
    ev.WorkloadStopped: FailoverStrategy._reported,
    ev.WorkloadFenced: FailoverStrategy._reported,
    ev.WorkloadExited: FailoverStrategy._exited,
    ev.WorkloadUnknown: FailoverStrategy._unknown_reported,
    ev.WorkloadPromoted: FailoverStrategy._unchanged,  # the phase moved when Promote was sent
    ev.Tick: FailoverStrategy._unchanged,  # time passed: the rules decide again
}
"""The events every strategy takes, and how they fold (a strategy's `folds` adds its own
rows). A strategy changes these through the hooks they call (`_moving`, `_copy_failed`)
or by a row of its own, never by overriding a method named here."""
