"""WorkloadActor (``agent/workload/<name>/run``): drives the workload's driver.

It decides nothing: start, stop and fence come from its WorkloadSupervisor (or an operator);
every state change of the driver goes back to the supervisor as a `DriverReport`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from harmony.actors.base import OfWorkload, handles
from harmony.actors.drivers import DriverEvent, TetherSpec, make_driver
from harmony.actors.drivers.containment import containment_id
from harmony.actors.drivers.tether import deadline_dir
from harmony.actors.messages import (
    FenceWorkload,
    GetOutput,
    Output,
    StartWorkload,
    StopWorkload,
)
from harmony.private_files import private_dir
from harmony.strategies.registry import uses_lease

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriverReport:
    """Local: a driver thread reports a state change; the actor records it."""

    event: DriverEvent


class WorkloadActor(OfWorkload):
    """Carries out start/stop/fence on the driver, and mirrors the driver's state."""

    kind = "workload"

    def started(self) -> None:
        ref = self.actor_ref
        log_dir = Path(self.ctx.config.data_dir) / "workloads"
        private_dir(log_dir)
        tether = None
        if uses_lease(self.workload.strategy):
            # Tokened copies get a watcher outside the agent that fences at the deadline.
            journal = self.ctx.journal
            tether = TetherSpec(
                deadline_dir(self.ctx.config.data_dir, self.workload.name),
                journal.path if journal is not None else None,
                self.ctx.incarnation,
            )
        self.driver = make_driver(
            self.workload.driver,
            workload=self.workload.name,
            site=self.ctx.site,
            log_dir=log_dir,
            on_event=lambda ev: ref.tell(DriverReport(ev)),
            stop_grace=self.ctx.config.timings.stop_grace,
            containment=containment_id(self.ctx.config.data_dir, self.ctx.site, self.workload.name),
            tether=tether,
        )
        self.set_state("stopped", driver=str(self.workload.driver.__struct_config__.tag))

    def stopping(self) -> None:
        driver = getattr(self, "driver", None)
        if driver is not None:
            driver.close()

    @handles(StartWorkload)
    def on_start_workload(self, msg: StartWorkload) -> None:
        log.info("%s: start (token %s) %s", self.path, msg.token, msg.reason)
        self.driver.start(msg.token)

    @handles(StopWorkload)
    def on_stop_workload(self, msg: StopWorkload) -> None:
        log.info("%s: stop %s", self.path, msg.reason)
        # stop and fence block this thread for as long as the driver needs (a fence hook may
        # take its whole timeout), and the driver's own reports wait in the mailbox until
        # then: the board must not go on saying "running" meanwhile.
        self.set_state("stopping", last=f"stop: {msg.reason}"[:120])
        self.driver.stop(msg.reason or "requested")

    @handles(FenceWorkload)
    def on_fence_workload(self, msg: FenceWorkload) -> None:
        log.warning("%s: fence %s", self.path, msg.reason)
        self.set_state("stopping", last=f"fence: {msg.reason}"[:120])
        self.driver.fence(msg.reason or "requested")

    @handles(GetOutput)
    def on_get_output(self, msg: GetOutput) -> Output:
        return Output(lines=self.driver.output_tail(msg.lines))

    @handles(DriverReport)
    def on_driver_report(self, msg: DriverReport) -> None:
        ev = msg.event
        detail = {"pid": str(ev.pid or ""), "token": "" if ev.token is None else str(ev.token)}
        if ev.exit_code is not None:
            detail["exit_code"] = str(ev.exit_code)
        if ev.detail:
            detail["last"] = ev.detail[:120]
        self.set_state(str(ev.state), **detail)
        self.tell_parent(msg)
