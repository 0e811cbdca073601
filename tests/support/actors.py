"""Real Pykka actors with an AgentContext but no mesh: for supervision and liveness logic."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pykka

from harmony.actors.base import AgentContext
from harmony.actors.board import Board, PeerView
from harmony.actors.journal import Journal
from harmony.actors.timers import Scheduler
from harmony.config import SiteConfig, Supervision, Timings
from harmony.mesh.remote import ActorDirectory


@dataclass
class FakeClock:
    """Time that only moves when a test says so (unit tests of pure timing logic)."""

    now: float = 1000.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now


@dataclass
class Kit:
    ctx: AgentContext
    clock: FakeClock
    escalations: list[str] = field(default_factory=list)


def make_kit(max_restarts: int = 2, within: float = 10.0, timings: Timings | None = None) -> Kit:
    clock = FakeClock()
    escalations: list[str] = []
    cfg = SiteConfig(
        mesh="m",
        site="a",
        supervision=Supervision(max_restarts=max_restarts, within=within),
        timings=timings or Timings(heartbeat_interval=3600),  # timers never fire on their own
    )
    ctx = AgentContext(
        config=cfg,
        board=Board(),
        directory=ActorDirectory(),
        scheduler=Scheduler(clock.monotonic),
        clock=clock,
        bridge=None,
        incarnation="test",
        on_escalate=escalations.append,
        peer_view=PeerView(),
    )
    return Kit(ctx, clock, escalations)


@contextmanager
def journaled(kit: Kit, tmp_path: Path, **config: Any) -> Iterator[Kit]:
    """`kit` with its journal and data_dir under `tmp_path` (and any other config fields).
    On exit every actor stops first (a run actor stops its copy), then the timers and the
    journal."""
    ctx = kit.ctx
    ctx.config = msgspec.structs.replace(ctx.config, data_dir=str(tmp_path / "data"), **config)
    ctx.journal = Journal(tmp_path / "journal.jsonl", ctx.clock, "a", "m", "test")
    try:
        yield kit
    finally:
        pykka.ActorRegistry.stop_all()
        ctx.scheduler.stop()
        ctx.journal.close()
