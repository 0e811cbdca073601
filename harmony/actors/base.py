"""`HarmonyActor`: a Pykka actor with a path in the tree, a line on the board, typed handlers,
and answers for asks that came over the mesh.

A handler is a method marked `@handles(Ping)` next to its definition, so a search for a
message class finds the code that acts on it; the marks are collected into a table per class
(`HarmonyActor.handlers`) when the class is created, and a subclass inherits its bases' rows.
An exception in a handler goes back to the asker (local or remote); in a tell it kills the
actor, and its supervisor decides what happens next (see `supervision`). A message nobody
handles is a bug: it is logged as an error and journaled, an ask over the mesh is answered
with an error, and the actor goes on (a bad message never kills an actor). The tests check
that every message that can reach an actor has a handler (tests/actors/test_handlers.py).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, TypeVar

import pykka

from harmony.actors.board import Board, CopyBoard, PeerView
from harmony.actors.clock import Clock
from harmony.actors.journal import Journal
from harmony.actors.messages import ActorInfo
from harmony.actors.timers import Scheduler, Timer
from harmony.config import SiteConfig, WorkloadConfig
from harmony.mesh import wire
from harmony.mesh.leases import LeaseStore
from harmony.mesh.remote import ActorDirectory, Bridge, LocalRef, RemoteAsk, RemoteRef

log = logging.getLogger(__name__)


@dataclass
class AgentContext:
    """What every actor of one agent shares. Built once by the agent runtime."""

    config: SiteConfig
    board: Board
    directory: ActorDirectory
    scheduler: Scheduler
    clock: Clock
    bridge: Bridge | None
    incarnation: str
    on_escalate: Callable[[str], None]
    peer_view: PeerView
    copies: CopyBoard = field(default_factory=CopyBoard)
    journal: Journal | None = None
    leases: LeaseStore | None = None
    horizontal: tuple[WorkloadConfig, ...] = ()
    """The horizontal workloads as written; `config` runs their slots (`config.slots`)."""

    def record(
        self, workload: str, kind: str, reason: str, token: int | None = None, **detail: str
    ) -> None:
        """Journal a step (and publish it) when this agent has a journal."""
        if self.journal is not None:
            self.journal.record(workload, kind, reason, token, **detail)

    @property
    def site(self) -> str:
        return self.config.site

    @property
    def mesh(self) -> str:
        return self.config.mesh

    def ref(self, site: str, path: str) -> LocalRef | RemoteRef:
        """A reference to any actor of the mesh; local ones skip NATS."""
        if self.bridge is None or site == self.site:
            return LocalRef(self.directory, path, self.config.timings.ask_timeout)
        return self.bridge.ref(site, path)


ChildFactory = Callable[[AgentContext, str, pykka.ActorRef[Any]], pykka.ActorRef[Any]]
"""(context, path, parent ref) -> started actor ref: how a supervisor (re)starts a child."""


@dataclass(frozen=True)
class ChildFailed:
    """Local only: a child tells its parent it died of an exception."""

    path: str
    actor_urn: str
    error: str


class UnhandledMessage(Exception):
    pass


HandlerT = TypeVar("HandlerT", bound=Callable[..., Any])
_HANDLES = "__harmony_handles__"


def handles(*types: type) -> Callable[[HandlerT], HandlerT]:
    """Mark a method as the handler of these message types (see the module docstring)."""
    if not types:
        raise TypeError("@handles needs at least one message type")

    def mark(method: HandlerT) -> HandlerT:
        setattr(method, _HANDLES, (*getattr(method, _HANDLES, ()), *types))
        return method

    return mark


class HarmonyActor(pykka.ThreadingActor):
    kind: ClassVar[str] = "actor"
    handlers: ClassVar[Mapping[type, str]] = MappingProxyType({})
    """Message type -> the name of its handler method; built by `__init_subclass__`."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: dict[type, str] = {}
        for base in reversed(cls.__mro__[1:]):
            table.update(vars(base).get("handlers", {}))
        own: dict[type, str] = {}
        for name, attr in vars(cls).items():
            for t in getattr(attr, _HANDLES, ()):
                if t in own:
                    raise TypeError(f"{cls.__name__}: {t.__name__} handled by {own[t]} and {name}")
                own[t] = name
        cls.handlers = MappingProxyType(table | own)

    @classmethod
    def handler_for(cls, message_type: type) -> str | None:
        """The name of the method that handles `message_type` (or a base class of it)."""
        return next((cls.handlers[t] for t in message_type.__mro__ if t in cls.handlers), None)

    def __init__(self, ctx: AgentContext, path: str, parent: pykka.ActorRef[Any] | None) -> None:
        super().__init__()
        self.ctx = ctx
        self.path = path
        self.parent = parent
        self._timers: list[Timer] = []
        self._state = "starting"

    # -- lifecycle ---------------------------------------------------------------------
    def on_start(self) -> None:
        self.ctx.directory.register(self.path, self.actor_ref)
        old = self.ctx.board.get(self.path)
        self.ctx.board.put(
            ActorInfo(
                path=self.path,
                kind=self.kind,
                state=self._state,
                restarts=old.restarts if old else 0,
                policy=old.policy if old else "",
            )
        )
        try:
            self.started()
        except Exception:
            # Pykka does not call on_failure for on_start; the parent must still hear of it.
            self.on_failure(*sys.exc_info())
            raise
        if self._state == "starting":
            self.set_state("running")

    def started(self) -> None:
        """Hook for subclasses: runs on the actor's thread once it is registered."""

    def on_stop(self) -> None:
        self._cancel_timers()
        self.stopping()
        self.ctx.directory.unregister(self.path, self.actor_ref)
        self.ctx.board.update(self.path, state="stopped")

    def stopping(self) -> None:
        """Hook for subclasses: release what the actor holds (children, drivers)."""

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._cancel_timers()
        with contextlib.suppress(Exception):
            self.stopping()
        self.ctx.directory.unregister(self.path, self.actor_ref)
        error = f"{exception_type.__name__ if exception_type else 'Error'}: {exception_value}"
        self.ctx.board.update(self.path, state="failed")
        log.error("%s failed: %s", self.path, error)
        if self.parent is not None:
            self.tell_parent(ChildFailed(self.path, self.actor_urn, error))
        else:
            self.ctx.on_escalate(f"{self.path} failed: {error}")

    def tell_parent(self, message: object) -> None:
        """Tell the parent, if it still runs. A parent stops before its children at shutdown
        (and a failed one is restarted with them), so what a child reports meanwhile has
        no one to act on it: dropped, not an error that kills the child."""
        if self.parent is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                self.parent.tell(message)

    # -- state on the board --------------------------------------------------------------
    @property
    def state(self) -> str:
        """What the board shows for this actor ("running", or a kind's own, e.g. "held")."""
        return self._state

    def set_state(self, state: str, **detail: str) -> None:
        self._state = state
        if detail:
            info = self.ctx.board.get(self.path)
            merged = {**(info.detail if info else {}), **detail}
            self.ctx.board.update(self.path, state=state, detail=merged)
        else:
            self.ctx.board.update(self.path, state=state)

    def set_detail(self, **detail: str) -> None:
        info = self.ctx.board.get(self.path)
        self.ctx.board.update(self.path, detail={**(info.detail if info else {}), **detail})

    # -- timers --------------------------------------------------------------------------
    def every(self, interval: float, message: object, first: float = 0.0) -> Timer:
        timer = self.ctx.scheduler.every(interval, self._teller(message), first=first)
        self._timers.append(timer)
        return timer

    def after(self, delay: float, message: object) -> Timer:
        timer = self.ctx.scheduler.after(delay, self._teller(message))
        self._timers.append(timer)
        return timer

    def _teller(self, message: object) -> Callable[[], None]:
        ref = self.actor_ref

        def tell() -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(message)

        return tell

    def _cancel_timers(self) -> None:
        for t in self._timers:
            t.cancel()
        self._timers.clear()

    # -- messages ------------------------------------------------------------------------
    def on_receive(self, message: Any) -> Any:
        if isinstance(message, RemoteAsk):
            try:
                result = self.handle(message.message)
            except UnhandledMessage as e:
                message.reply(wire.ErrorReply(code=wire.ERR_UNHANDLED, reason=str(e)))
            except Exception as e:
                message.reply(
                    wire.ErrorReply(code=wire.ERR_HANDLER, reason=f"{type(e).__name__}: {e}")
                )
            else:
                message.reply(result if isinstance(result, wire.Message) else wire.Ack())
            return None
        try:
            return self.handle(message)
        except UnhandledMessage:
            return None

    def handle(self, message: Any) -> Any:
        name = self.handler_for(type(message))
        if name is None:
            raise self.unhandled(message)
        return getattr(self, name)(message)

    def unhandled(self, message: object) -> UnhandledMessage:
        """A message type this actor has no handler for: a bug, said loudly, never fatal."""
        error = UnhandledMessage(
            f"{self.kind} at {self.path} does not handle {type(message).__name__}"
        )
        log.error("%s", error)
        self.ctx.record("", "unhandled-message", str(error), actor=self.path)
        return error


class OfWorkload(HarmonyActor):
    """An actor of one workload's subtree (its supervisor, lease and run actors): each is
    made for one workload's configuration, so taking it is written once, here."""

    def __init__(
        self,
        ctx: AgentContext,
        path: str,
        parent: pykka.ActorRef[Any] | None,
        workload: WorkloadConfig,
    ) -> None:
        super().__init__(ctx, path, parent)
        self.workload = workload
        self.name = workload.name

    @classmethod
    def factory(cls, workload: WorkloadConfig) -> ChildFactory:
        """How a supervisor starts (and restarts) this actor for `workload`."""
        return lambda ctx, path, parent: cls.start(ctx, path, parent, workload)
