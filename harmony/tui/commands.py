"""Operator actions: what each key asks of which actor, and how to read the answer.

Kept apart from the widgets so the wording of a confirmation and the interpretation of an
answer (an `Ack`, a `CommandResult`, an `ErrorReply` raised as `RemoteError`, a timeout) are
one table, tested without a screen. Actions go to the workload's supervisor
(``agent/workload/<w>``) or the site's root (``agent``), which journal them as operator steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from harmony.actors.messages import (
    CommandResult,
    DrainSite,
    FenceWorkload,
    MoveWorkload,
    StartWorkload,
    StopWorkload,
)
from harmony.mesh import wire
from harmony.mesh.connection import MeshUnavailable
from harmony.mesh.remote import RemoteError
from harmony.tui.feed import Feed

REASON = "operator (harmony tui)"

ActionKind = Literal["stop", "start", "fence", "move", "drain", "kill", "restart"]


@dataclass(frozen=True)
class Action:
    """One operator action on a site, or on a workload of a site."""

    kind: ActionKind
    site: str
    workload: str = ""
    target: str = ""

    @property
    def title(self) -> str:
        what = f"{self.workload} on {self.site}" if self.workload else f"site {self.site}"
        return {
            "stop": f"Stop {what}?",
            "start": f"Start {what}?",
            "fence": f"Fence {what}?",
            "move": f"Move {what} to {self.target}?",
            "drain": f"Drain {what}?",
            "kill": f"Kill {what}?",
            "restart": f"Restart {what}?",
        }[self.kind]

    @property
    def explanation(self) -> str:
        return {
            "stop": "The driver stops the process (SIGTERM, then SIGKILL after the grace). "
            "The workload's strategy may start it again.",
            "start": "The driver starts the process on this site now, without taking the "
            "lease: under absolute-consistency prefer moving it.",
            "fence": "The driver fences the workload at once: its process is stopped "
            "(or the fence hook runs). Use it when this copy must not run any more.",
            "move": "The workload's supervisor hands the workload over to the target site.",
            "drain": "Every workload moves off this site; the agent keeps running.",
            "kill": "Demo only: SIGKILL the site's agent, its nats-server and its workloads, "
            "as a crash would. Watch the others mark it silent and take over.",
            "restart": "Demo only: start the site's agent (and its nats-server) again. "
            "Watch it rejoin the mesh and its workloads settle.",
        }[self.kind]

    @property
    def path(self) -> str:
        return f"agent/workload/{self.workload}" if self.workload else "agent"

    def message(self) -> wire.Message:
        if self.kind == "stop":
            return StopWorkload(reason=REASON)
        if self.kind == "start":
            return StartWorkload(reason=REASON)
        if self.kind == "fence":
            return FenceWorkload(reason=REASON)
        if self.kind == "move":
            return MoveWorkload(target=self.target, reason=REASON)
        if self.kind == "drain":
            return DrainSite(reason=REASON)
        raise ValueError(f"{self.kind} is not a mesh command")


@dataclass(frozen=True)
class Outcome:
    ok: bool
    text: str

    @property
    def severity(self) -> Literal["information", "error"]:
        return "information" if self.ok else "error"


def interpret(action: Action, answer: object) -> Outcome:
    """The answer of a successful ask: `Ack` (None), `CommandResult`, or anything else."""
    done = f"{action.kind} {action.workload or action.site}"
    if answer is None:
        return Outcome(True, f"{done}: accepted by {action.site}")
    if isinstance(answer, CommandResult):
        detail = f": {answer.detail}" if answer.detail else ""
        return Outcome(answer.ok, f"{done}: {'done' if answer.ok else 'refused'}{detail}")
    return Outcome(True, f"{done}: answered {type(answer).__name__}")


def failure(action: Action, error: BaseException) -> Outcome:
    """What went wrong, in operator words (the error code stays visible)."""
    done = f"{action.kind} {action.workload or action.site}"
    match error:
        case RemoteError(code=wire.ERR_UNHANDLED):
            name = type(action.message()).__name__
            why = f"the agent on {action.site} does not support {name} yet ({error.code})"
        case RemoteError():
            why = f"{error.code}: {error.reason}"
        case TimeoutError():
            why = f"no answer from {action.site} ({error})"
        case MeshUnavailable():
            why = f"mesh unreachable ({error})"
        case _:
            why = f"{type(error).__name__}: {error}"
    return Outcome(False, f"{done}: {why}")


@dataclass(frozen=True)
class SiteControl:
    """What only the demo can do to a site: it started the processes itself."""

    kill: Callable[[str], None]
    restart: Callable[[str], None]


def execute(
    feed: Feed,
    action: Action,
    timeout: float = 5.0,
    control: SiteControl | None = None,
) -> Outcome:
    """Carry out one action; blocks (run it on a worker thread). Never raises."""
    try:
        if action.kind in ("kill", "restart"):
            if control is None:
                return Outcome(False, f"{action.kind}: only the demo controls site processes")
            if action.kind == "kill":
                control.kill(action.site)
                return Outcome(True, f"killed site {action.site} (agent, nats-server, workloads)")
            control.restart(action.site)
            return Outcome(True, f"restarted site {action.site}: its agent is up again")
        answer = feed.ask(action.site, action.path, action.message(), timeout)
    except Exception as e:
        return failure(action, e)
    return interpret(action, answer)
