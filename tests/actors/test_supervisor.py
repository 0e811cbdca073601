"""Supervision with real Pykka actors: one-for-one restarts within limits, then escalation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pykka
import pytest
from support.actors import Kit, make_kit
from support.waiting import wait_until

from harmony.actors.base import HarmonyActor, handles
from harmony.actors.supervision import RestartIntensity, Supervisor


@dataclass(frozen=True)
class Crash:
    pass


@dataclass(frozen=True)
class Echo:
    text: str


class Worker(HarmonyActor):
    kind = "worker"

    @handles(Crash)
    def on_crash(self, _: Crash) -> None:
        raise RuntimeError("boom")

    @handles(Echo)
    def on_echo(self, msg: Echo) -> str:
        return msg.text


class Parent(Supervisor):
    kind = "parent"

    def started(self) -> None:
        self.start_child("worker", lambda c, p, parent: Worker.start(c, p, parent))


class Root(Supervisor):
    kind = "root"

    def started(self) -> None:
        self.start_child("parent", lambda c, p, parent: Parent.start(c, p, parent))


@pytest.fixture
def kit() -> Iterator[Kit]:
    k = make_kit(max_restarts=2, within=10.0)
    yield k
    pykka.ActorRegistry.stop_all()
    k.ctx.scheduler.stop()


def worker(kit: Kit) -> pykka.ActorRef[Any]:
    ref = wait_until(lambda: kit.ctx.directory.get("agent/parent/worker"), 5)
    assert isinstance(ref, pykka.ActorRef)
    return ref


def test_failed_child_is_restarted_and_works(kit: Kit) -> None:
    Root.start(kit.ctx, "agent", None)
    first = worker(kit)
    assert first.ask(Echo("x")) == "x"
    first.tell(Crash())
    wait_until(
        lambda: (
            (kit.ctx.board.get("agent/parent/worker") or 0)
            and kit.ctx.board.get("agent/parent/worker").restarts == 1
        ),
        5,
    )  # type: ignore[union-attr]
    second = worker(kit)
    wait_until(lambda: worker(kit) is not first, 5)
    assert worker(kit).ask(Echo("y")) == "y"
    assert not first.is_alive()
    info = kit.ctx.board.get("agent/parent")
    assert info is not None and info.policy == "one-for-one, max 2 restarts in 10s"
    assert second is not None and kit.escalations == []


def test_too_many_restarts_escalate_to_the_root(kit: Kit) -> None:
    Root.start(kit.ctx, "agent", None)
    for n in range(1, 3):
        current = worker(kit)
        current.tell(Crash())
        wait_until(lambda cur=current: worker(kit) is not cur and worker(kit).is_alive(), 5)
        info = kit.ctx.board.get("agent/parent/worker")
        assert info is not None and info.restarts == n
    # Third failure within 10 s: the parent gives up, fails, and the root restarts *it*.
    worker(kit).tell(Crash())
    wait_until(
        lambda: (
            (kit.ctx.board.get("agent/parent") or 0)
            and kit.ctx.board.get("agent/parent").restarts == 1
        ),
        5,
    )  # type: ignore[union-attr]
    assert worker(kit).ask(Echo("z")) == "z"
    assert kit.escalations == []


def test_restarts_outside_the_window_are_forgiven(kit: Kit) -> None:
    Root.start(kit.ctx, "agent", None)
    for n in range(1, 6):
        current = worker(kit)
        kit.clock.now += 11  # each failure lands after the previous one left the window
        current.tell(Crash())
        wait_until(lambda cur=current: worker(kit) is not cur, 5)
        info = kit.ctx.board.get("agent/parent/worker")
        assert info is not None and info.restarts == n
    parent = kit.ctx.board.get("agent/parent")
    assert parent is not None and parent.restarts == 0


def test_root_failure_reaches_the_agent() -> None:
    k = make_kit(max_restarts=0, within=10.0)
    try:
        Parent.start(k.ctx, "agent", None)
        ref = wait_until(lambda: k.ctx.directory.get("agent/worker"), 5)
        ref.tell(Crash())
        wait_until(lambda: k.escalations, 5)
        assert "agent failed" in k.escalations[0] and "max 0 restarts" in k.escalations[0]
    finally:
        pykka.ActorRegistry.stop_all()
        k.ctx.scheduler.stop()


def test_restart_intensity_window() -> None:
    ri = RestartIntensity(max_restarts=2, within=10)
    assert ri.allow(0) and ri.allow(1)
    assert not ri.allow(2)
    assert ri.allow(11.5)  # the restart at 0 and 1 left the window
