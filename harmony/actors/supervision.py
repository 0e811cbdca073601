"""Supervision, OTP-style: one-for-one restarts within an intensity limit, then escalation.

Pykka has no supervision. A `HarmonyActor` that dies of an exception tells its parent
`ChildFailed`; a `Supervisor` restarts that child unless more than `max_restarts` restarts
happened within `within` seconds, in which case it stops its other children and fails itself,
which hands the problem to *its* parent. The root's failure reaches the agent runtime, which
exits non-zero (so the service manager restarts the whole agent).
"""

from __future__ import annotations

import collections
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import pykka

from harmony.actors.base import ChildFactory, ChildFailed, HarmonyActor, handles

log = logging.getLogger(__name__)


class Escalation(Exception):
    """Raised by a supervisor whose restart intensity was exceeded."""


@dataclass
class RestartIntensity:
    max_restarts: int
    within: float

    def __post_init__(self) -> None:
        self._times: collections.deque[float] = collections.deque()

    def allow(self, now: float) -> bool:
        """Record a restart at `now`; False when it would exceed the limit."""
        while self._times and now - self._times[0] > self.within:
            self._times.popleft()
        if len(self._times) >= self.max_restarts:
            return False
        self._times.append(now)
        return True

    def describe(self) -> str:
        return f"one-for-one, max {self.max_restarts} restarts in {self.within:g}s"


@dataclass
class _Child:
    name: str
    factory: ChildFactory
    ref: pykka.ActorRef[Any] | None = None
    restarts: int = 0


class Supervisor(HarmonyActor):
    """A HarmonyActor with children. Subclasses call `start_child` from `started()`.

    No constructor of its own (its state is set up in `on_start`), so that a subclass may
    also be an `OfWorkload` and take that constructor."""

    kind = "supervisor"
    intensity: RestartIntensity
    children: dict[str, _Child]

    def on_start(self) -> None:
        sup = self.ctx.config.supervision
        self.intensity = RestartIntensity(sup.max_restarts, sup.within)
        self.children = {}
        super().on_start()
        self.ctx.board.update(self.path, policy=self.intensity.describe())

    def child_path(self, name: str) -> str:
        return f"{self.path}/{name}"

    def start_child(self, name: str, factory: ChildFactory) -> pykka.ActorRef[Any]:
        child = _Child(name, factory)
        self.children[name] = child
        child.ref = factory(self.ctx, self.child_path(name), self.actor_ref)
        return child.ref

    def stop_child(self, name: str) -> None:
        child = self.children.pop(name, None)
        if child is not None and child.ref is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                child.ref.stop(block=True, timeout=30)
        self.ctx.board.remove(self.child_path(name))

    def child_ref(self, name: str) -> pykka.ActorRef[Any] | None:
        child = self.children.get(name)
        return child.ref if child else None

    def stopping(self) -> None:
        # Stop children youngest first, the way they were started in reverse.
        for name in reversed(list(self.children)):
            child = self.children[name]
            if child.ref is not None:
                with contextlib.suppress(pykka.ActorDeadError, pykka.Timeout):
                    child.ref.stop(block=True, timeout=30)
        self.children.clear()

    @handles(ChildFailed)
    def on_child_failed(self, msg: ChildFailed) -> None:
        child = next(
            (c for c in self.children.values() if self.child_path(c.name) == msg.path), None
        )
        if child is None or child.ref is None or child.ref.actor_urn != msg.actor_urn:
            return  # a child we already replaced or removed
        if not self.intensity.allow(self.ctx.clock.monotonic()):
            raise Escalation(
                f"{msg.path} failed ({msg.error}); {self.intensity.describe()} exceeded"
            )
        child.restarts += 1
        log.warning("restarting %s after: %s (restart %d)", msg.path, msg.error, child.restarts)
        # The board first: the new actor's on_start keeps the count it finds there.
        self.ctx.board.update(msg.path, restarts=child.restarts)
        child.ref = child.factory(self.ctx, msg.path, self.actor_ref)
        self.child_restarted(child.name, msg.error)

    def child_restarted(self, name: str, error: str) -> None:
        """Hook: a child was replaced after `error`."""
