"""One workload placed on this site: its supervisor, the actor that drives the driver, and the
lease actor.

    agent/workload/<name>          WorkloadSupervisor: decides; restarts its children
    agent/workload/<name>/lease    LeaseActor (absolute-consistency only)
    agent/workload/<name>/run      WorkloadActor: start, stop, fence, probe via the driver
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pykka

from harmony.actors.base import AgentContext, HarmonyActor
from harmony.actors.drivers import DriverEvent, make_driver
from harmony.actors.messages import (
    FenceWorkload,
    GetOutput,
    Output,
    StartWorkload,
    StopWorkload,
)
from harmony.actors.peers import PeerChanged
from harmony.actors.supervision import Supervisor
from harmony.config import WorkloadConfig

log = logging.getLogger(__name__)


def workload_path(name: str) -> str:
    return f"agent/workload/{name}"


@dataclass(frozen=True)
class DriverReport:
    """Local: a driver thread reports a state change; the actor records it."""

    event: DriverEvent


class WorkloadActor(HarmonyActor):
    """Carries out start/stop/fence on the driver, and mirrors the driver's state."""

    kind = "workload"

    def __init__(
        self,
        ctx: AgentContext,
        path: str,
        parent: pykka.ActorRef[Any] | None,
        workload: WorkloadConfig,
    ) -> None:
        super().__init__(ctx, path, parent)
        self.workload = workload

    def started(self) -> None:
        ref = self.actor_ref
        log_dir = Path(self.ctx.config.data_dir) / "workloads"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.driver = make_driver(
            self.workload.driver,
            workload=self.workload.name,
            site=self.ctx.site,
            log_dir=log_dir,
            on_event=lambda ev: ref.tell(DriverReport(ev)),
            stop_grace=self.ctx.config.timings.stop_grace,
        )
        self.set_state("stopped", driver=str(self.workload.driver.__struct_config__.tag))

    def stopping(self) -> None:
        driver = getattr(self, "driver", None)
        if driver is not None:
            driver.close()

    def on_start_workload(self, msg: StartWorkload) -> None:
        log.info("%s: start (token %s) %s", self.path, msg.token, msg.reason)
        self.driver.start(msg.token)

    def on_stop_workload(self, msg: StopWorkload) -> None:
        log.info("%s: stop %s", self.path, msg.reason)
        self.driver.stop(msg.reason or "requested")

    def on_fence_workload(self, msg: FenceWorkload) -> None:
        log.warning("%s: fence %s", self.path, msg.reason)
        self.driver.fence(msg.reason or "requested")

    def on_get_output(self, msg: GetOutput) -> Output:
        return Output(lines=self.driver.output_tail(msg.lines))

    def on_driver_report(self, msg: DriverReport) -> None:
        ev = msg.event
        detail = {"pid": str(ev.pid or ""), "token": "" if ev.token is None else str(ev.token)}
        if ev.exit_code is not None:
            detail["exit_code"] = str(ev.exit_code)
        if ev.detail:
            detail["last"] = ev.detail[:120]
        self.set_state(str(ev.state), **detail)
        if self.parent is not None:
            self.parent.tell(msg)


class LeaseActor(HarmonyActor):
    """Holds the workload's lease on the mesh (absolute-consistency). Acquire/renew/release
    land with the failover strategies; here it has its place in the tree."""

    kind = "lease"

    def started(self) -> None:
        self.set_state("idle", holder="", token="")


class WorkloadSupervisor(Supervisor):
    """Decides, for one workload, what this site should do; restarts its children."""

    kind = "workload-supervisor"

    def __init__(
        self,
        ctx: AgentContext,
        path: str,
        parent: pykka.ActorRef[Any] | None,
        workload: WorkloadConfig,
    ) -> None:
        super().__init__(ctx, path, parent)
        self.workload = workload

    def started(self) -> None:
        w = self.workload
        role = self.role()
        self.set_state("running", strategy=w.strategy, role=role, primary=w.topology.primary)
        if w.strategy == "absolute-consistency":
            self.start_child("lease", lambda c, p, parent: LeaseActor.start(c, p, parent))
        self.start_child("run", lambda c, p, parent: WorkloadActor.start(c, p, parent, w))
        if role == "primary":
            self.tell_run(StartWorkload(reason="primary site"))

    def role(self) -> str:
        t = self.workload.topology
        if t.primary == self.ctx.site:
            return "primary"
        return "standby" if self.ctx.site in t.standbys else "none"

    def tell_run(self, message: object) -> None:
        ref = self.child_ref("run")
        if ref is not None:
            ref.tell(message)

    def child_restarted(self, name: str, error: str) -> None:
        if name == "run" and self.role() == "primary":
            self.tell_run(StartWorkload(reason=f"restarted after {error}"))

    def on_peer_changed(self, msg: PeerChanged) -> None:
        self.set_detail(**{f"peer.{msg.site}": msg.new})

    def on_driver_report(self, msg: DriverReport) -> None:
        self.set_detail(workload=str(msg.event.state))

    # Operator commands addressed to the workload go to the actor that runs it.
    def on_start_workload(self, msg: StartWorkload) -> None:
        self.tell_run(msg)

    def on_stop_workload(self, msg: StopWorkload) -> None:
        self.tell_run(msg)

    def on_fence_workload(self, msg: FenceWorkload) -> None:
        self.tell_run(msg)
