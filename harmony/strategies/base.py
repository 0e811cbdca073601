"""`FailoverStrategy`: the sans-I/O step shared by all strategies.

``decision = strategy.step(decision.state, event, now)``: the actor feeds events in, carries
the commands out in order, and delivers a `Tick` at `decision.wake_at`. The step folds what
every strategy cares about (peers, driver reports, shutdown) and leaves the rest to the
subclass, which reads its rules from `tables`.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterable
from types import MappingProxyType
from typing import ClassVar

from harmony.strategies import events as ev
from harmony.strategies.commands import (
    Command,
    FenceWorkload,
    Promote,
    RecordEvent,
    StartWorkload,
    StopWorkload,
)
from harmony.strategies.params import Params
from harmony.strategies.state import Decision, DriverView, Peer, WorkloadState
from harmony.strategies.tables import DRIVER_REPORTS, Act, PeerStatus, Phase
from harmony.strategies.topology import FailoverTopology

replace = dataclasses.replace

_PEER_STATUS = {ev.PeerAlive: PeerStatus.ALIVE, ev.PeerSuspect: PeerStatus.SUSPECT}
_REPORTS: dict[type, str] = {
    ev.WorkloadStarted: "started",
    ev.WorkloadStopped: "stopped",
    ev.WorkloadFenced: "fenced",
}


class FailoverStrategy(ABC):
    """One failover strategy, configured by `Params`; holds no per-site state itself."""

    name: ClassVar[str]

    def __init__(self, params: Params | None = None) -> None:
        self.params = params if params is not None else Params()

    def start(self, site: str, topology: FailoverTopology, now: float) -> Decision:
        """The first decision for `site` (call once when the workload supervisor starts)."""
        if site not in topology:
            raise ValueError(f"site {site!r} is not in the topology {topology.sites}")
        state = WorkloadState(site=site, topology=topology, booted_at=now)
        return self._evaluate(state, now, list(self._boot(state)))

    def step(self, state: WorkloadState, event: ev.Event, now: float) -> Decision:
        """Fold `event` in at time `now` and decide. Pure: same inputs, same decision."""
        if state.done:
            return Decision(state)
        out: list[Command] = []
        state = self._absorb_common(state, event, now, out)
        state = self._absorb(state, event, now, out)
        return self._evaluate(state, now, out)

    # -- for subclasses ------------------------------------------------------------------
    def _boot(self, state: WorkloadState) -> Iterable[Command]:
        return ()

    @abstractmethod
    def _absorb(
        self, state: WorkloadState, event: ev.Event, now: float, out: list[Command]
    ) -> WorkloadState:
        """Fold the strategy's own events into the state."""

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

    def _absorb_common(
        self, state: WorkloadState, event: ev.Event, now: float, out: list[Command]
    ) -> WorkloadState:
        if isinstance(event, ev.PeerAlive | ev.PeerSuspect | ev.PeerSilent):
            status = _PEER_STATUS.get(type(event), PeerStatus.SILENT)
            old = state.peers.get(event.site)
            if event.site == state.site or (old is not None and old.status is status):
                return state
            peers = {**state.peers, event.site: Peer(status, now)}
            return replace(state, peers=MappingProxyType(peers))
        if isinstance(event, ev.MoveRequested):
            if event.target not in state.topology:
                out.append(RecordEvent("move-refused", f"{event.target} is not in the topology"))
                return state
            out.append(RecordEvent("move", f"operator moves the workload to {event.target}"))
            topology = state.topology.preferring(event.target)
            return self._moving(replace(state, topology=topology, moved_to=event.target), out)
        if isinstance(event, ev.ShutdownRequested):
            if not state.shutting_down:
                out.append(RecordEvent("shutdown", "graceful shutdown requested"))
            return replace(state, shutting_down=True)
        if isinstance(event, ev.WorkloadPromoted):
            return state
        if isinstance(event, ev.WorkloadExited):
            return self._exited(state, event, now, out)
        kind = _REPORTS.get(type(event))
        if kind is not None:
            return self._moved(state, DRIVER_REPORTS.get((state.driver.phase, kind)))
        return state

    def _exited(
        self, state: WorkloadState, event: ev.WorkloadExited, now: float, out: list[Command]
    ) -> WorkloadState:
        was = state.driver.phase
        kind = "restarting" if event.restarting else "exited"
        state = self._moved(state, DRIVER_REPORTS.get((was, kind)))
        if was in (Phase.STARTING, Phase.RUNNING):
            how = "the driver restarts it" if event.restarting else "not restarted"
            out.append(RecordEvent("copy-exited", f"copy exited (code {event.code}); {how}"))
            if state.driver.phase is Phase.STOPPED:
                state = self._copy_failed(state, now, out)
        return state

    @staticmethod
    def _moved(state: WorkloadState, phase: Phase | None) -> WorkloadState:
        if phase is None or phase is state.driver.phase:
            return state
        if phase is Phase.STOPPED:
            return replace(state, driver=DriverView())
        return replace(state, driver=replace(state.driver, phase=phase))

    @staticmethod
    def _drive(
        state: WorkloadState, act: Act, why: str, now: float, token: int | None = None
    ) -> tuple[WorkloadState, Command]:
        """The command for `act`, and the state with the phase moved optimistically."""
        d = state.driver
        cmd: Command
        if act is Act.START_ACTIVE and token is not None:
            cmd = StartWorkload(token, why)
            d = DriverView(Phase.STARTING, active=True, token=token, started_at=now)
        elif act is Act.PROMOTE and token is not None:
            cmd = Promote(token, why)
            d = replace(d, active=True, token=token)
        elif act in (Act.START, Act.START_PASSIVE):
            cmd = StartWorkload(None, why, passive=act is Act.START_PASSIVE)
            d = DriverView(Phase.STARTING, started_at=now)
        elif act is Act.STOP:
            cmd = StopWorkload(why)
            d = replace(d, phase=Phase.STOPPING)
        elif act is Act.FENCE:
            cmd = FenceWorkload(why)
            d = replace(d, phase=Phase.FENCING)
        else:
            raise ValueError(f"cannot {act} without a token")
        return replace(state, driver=d), cmd
