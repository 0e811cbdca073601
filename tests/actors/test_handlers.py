"""Every message that can reach an actor has a handler, and one without a handler is loud.

What can reach an actor: the types the export list (`harmony/actors/exports.py`) lets in at
its path, and the local messages this code tells or asks it. The local ones are the table
`INTERNAL` below; a scan of `harmony/actors` checks the table against the code: every message
*constructed* in a send (`tell`, `ask`, `every`, `after`, `report`, `tell_child`) must be in
the table under its receiver, so a new message sent to an actor without a handler (or without
a row here) fails this test. Sends of a variable (a forwarded message, the strategy's lease
commands) are not visible to the scan: their rows are written by hand, with the reason.
"""

from __future__ import annotations

import ast
import importlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support.actors import Kit, journaled, make_kit

import harmony.actors
from harmony.actors import lease
from harmony.actors import messages as m
from harmony.actors.agent import AgentSupervisor
from harmony.actors.base import ChildFailed, HarmonyActor, handles
from harmony.actors.cost import CostActor, PricesRead, ReadPrices
from harmony.actors.exports import EXPORTS
from harmony.actors.horizontal import HorizontalActor, Replan
from harmony.actors.journal import read_journal
from harmony.actors.lease import LeaseActor, Led, Observed, Poll
from harmony.actors.peers import (
    CheckPeers,
    HeartbeatSeen,
    PeerChanged,
    PeerCopies,
    PeerFacts,
    PeerWatch,
    ResendCopies,
)
from harmony.actors.price import PriceActor, PublishPrice, RecordMove, RunPriceHook
from harmony.actors.site import Beat, SiteActor, WriteSummary
from harmony.actors.supervision import Supervisor
from harmony.actors.workload import DriverReport, WorkloadActor
from harmony.actors.workload_supervisor import Drain, MoveAway, WorkloadSupervisor
from harmony.mesh import wire
from harmony.mesh.remote import RemoteAsk
from harmony.strategies.commands import AcquireLease, ReleaseLease, RenewLease, WatchLease
from harmony.strategies.events import LeaseAcquired, Tick

ACTORS: tuple[type[HarmonyActor], ...] = (
    AgentSupervisor,
    SiteActor,
    PeerWatch,
    WorkloadSupervisor,
    LeaseActor,
    WorkloadActor,
    PriceActor,
    CostActor,
    HorizontalActor,
)

PATHS: dict[str, type[HarmonyActor]] = {
    "agent": AgentSupervisor,
    "agent/site": SiteActor,
    "agent/peers": PeerWatch,
    "agent/workload/*": WorkloadSupervisor,
    "agent/workload/*/run": WorkloadActor,
    "agent/workload/*/lease": LeaseActor,
    "agent/workload/*/cost": CostActor,
    "agent/price": PriceActor,
}

PARENT: dict[type[HarmonyActor], type[HarmonyActor]] = {
    SiteActor: AgentSupervisor,
    PeerWatch: AgentSupervisor,
    WorkloadSupervisor: AgentSupervisor,
    HorizontalActor: AgentSupervisor,
    LeaseActor: WorkloadSupervisor,
    WorkloadActor: WorkloadSupervisor,
    PriceActor: AgentSupervisor,
    CostActor: WorkloadSupervisor,
}
CHILDREN: dict[str, type[HarmonyActor]] = {
    "run": WorkloadActor,
    "lease": LeaseActor,
    "cost": CostActor,
}
SUPERVISORS = (AgentSupervisor, WorkloadSupervisor)

INTERNAL: dict[type[HarmonyActor], set[type]] = {
    AgentSupervisor: {
        ChildFailed,
        PeerChanged,
        PeerCopies,
        PeerFacts,  # a peer's labels or constraint digests changed
        Drain,  # runtime.Agent.drain
    },
    SiteActor: {
        Beat,
        WriteSummary,
        m.Ping,  # another site's probe
        m.Notice,  # another site's SendNotice
    },
    PeerWatch: {HeartbeatSeen, CheckPeers, ResendCopies},
    WorkloadSupervisor: {
        ChildFailed,
        Tick,
        PeerChanged,  # forwarded by the agent (to_workloads: a variable)
        PeerCopies,  # the same
        PeerFacts,  # the same
        DriverReport,  # forwarded by the run actor (a variable)
        Drain,  # forwarded by the agent (a variable)
        MoveAway,
        m.MoveWorkload,  # forwarded to the other sites of the topology
        *lease.REPORTS,  # what the lease child reports
    },
    HorizontalActor: {
        Replan,
        PeerChanged,  # forwarded by the agent, as to every actor at agent/workload/*
        PeerCopies,
        PeerFacts,
        Drain,
        MoveAway,
    },
    LeaseActor: {
        # the strategy's lease commands, passed on by WorkloadSupervisor.execute (a variable)
        AcquireLease,
        RenewLease,
        ReleaseLease,
        WatchLease,
        Poll,
        Observed,
        Led,  # told by the step-down request's done callback
    },
    WorkloadActor: {
        m.StartWorkload,
        m.StopWorkload,
        m.FenceWorkload,
        DriverReport,
    },
    PriceActor: {RunPriceHook, PublishPrice, RecordMove},
    CostActor: {
        ReadPrices,
        PricesRead,  # told by the read's done callback (a variable)
    },
}

SENDS = {"tell", "ask", "every", "after", "report", "tell_child", "tell_parent", "to_workloads"}


def exported() -> dict[type[HarmonyActor], set[type]]:
    out: dict[type[HarmonyActor], set[type]] = {}
    for pattern, by_kind in EXPORTS:
        assert pattern in PATHS, f"exports.py names {pattern}: which actor class lives there?"
        for types in by_kind.values():
            out.setdefault(PATHS[pattern], set()).update(types)
            if pattern == "agent/workload/*":  # a horizontal workload's actor lives there too
                out.setdefault(HorizontalActor, set()).update(types)
    return out


def modules() -> Iterator[ModuleType]:
    root = Path(harmony.actors.__file__).parent
    for path in sorted(root.glob("*.py")):
        yield importlib.import_module(f"harmony.actors.{path.stem}")


def resolve(node: ast.expr, module: ModuleType) -> Any:
    """The object a name or dotted name stands for in `module` (None: not a plain name)."""
    if isinstance(node, ast.Name):
        return vars(module).get(node.id)
    if isinstance(node, ast.Attribute):
        owner = resolve(node.value, module)
        return getattr(owner, node.attr, None) if owner is not None else None
    return None


def receivers(
    method: str, target: str, call: ast.Call, owner: type | None
) -> tuple[type[HarmonyActor], ...]:
    """Which actor classes a send reaches; fails on an expression the table does not know."""
    actor = owner if owner is not None and issubclass(owner, HarmonyActor) else None
    if method in ("every", "after") and target == "self" and actor is not None:
        return (actor,)
    if method == "report" and actor is not None:
        return (PARENT[actor],)
    if method == "tell_child" and isinstance(call.args[0], ast.Constant):
        return (CHILDREN[call.args[0].value],)
    if method == "to_workloads" or (target == "child.ref" and actor is AgentSupervisor):
        return (WorkloadSupervisor, HorizontalActor)  # both live at agent/workload/<name>
    if target == "watch" and actor is HorizontalActor:
        return (PeerWatch,)  # the directory's agent/peers
    if target.startswith("self.ctx.ref(self.ctx.site, workload_path(") and actor is HorizontalActor:
        return (WorkloadSupervisor,)  # a slot's supervisor, here
    if target in ("self.actor_ref", "ref", "me") and actor is not None:
        return (actor,)
    if method == "tell_parent":
        target = "self.parent"
    if target == "self.parent" and actor is HarmonyActor:
        return SUPERVISORS  # ChildFailed: any actor's parent
    if target == "self.parent" and actor is not None:
        return (PARENT[actor],)
    if target.startswith("self.ctx.ref(") and "SITE_PATH" in target:
        return (SiteActor,)
    if target.startswith("self.ctx.ref(") and "self.path" in target and actor is not None:
        return (actor,)
    if target == "price" and actor is CostActor:  # the directory's PRICE_PATH
        return (PriceActor,)
    if target == "self.root":
        return (AgentSupervisor,)
    raise AssertionError(f"a send to {target}.{method}: teach receivers() who that is")


def scanned_sends() -> set[tuple[type[HarmonyActor], type, str]]:
    """(receiver, message type, where) for every message constructed in a send."""
    found: set[tuple[type[HarmonyActor], type, str]] = set()
    for module in modules():
        tree = ast.parse(Path(module.__file__ or "").read_text())
        for cls_node in [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]:
            owner = vars(module).get(cls_node.name)
            for call in [n for n in ast.walk(cls_node) if isinstance(n, ast.Call)]:
                func = call.func
                if not isinstance(func, ast.Attribute) or func.attr not in SENDS:
                    continue
                for arg in call.args:
                    if not isinstance(arg, ast.Call):
                        continue
                    message = resolve(arg.func, module)
                    if not isinstance(message, type):
                        continue
                    where = f"{module.__name__}:{call.lineno}"
                    target = ast.unparse(func.value)
                    for receiver in receivers(func.attr, target, call, owner):
                        found.add((receiver, message, where))
    return found


def test_the_scan_sees_the_sends_it_should() -> None:
    """The scan itself works: a few sends known to be in the code are found."""
    sends = {(r, t) for r, t, _ in scanned_sends()}
    assert (WorkloadSupervisor, MoveAway) in sends
    assert (AgentSupervisor, ChildFailed) in sends
    assert (PeerWatch, CheckPeers) in sends
    assert (WorkloadSupervisor, LeaseAcquired) in sends
    assert (SiteActor, m.Notice) in sends


def test_every_message_sent_to_an_actor_in_the_code_is_in_the_table() -> None:
    missing = sorted(
        f"{where}: {t.__name__} to {r.__name__}"
        for r, t, where in scanned_sends()
        if t not in INTERNAL.get(r, set())
    )
    assert missing == [], "add these rows to INTERNAL (and a handler to the actor)"


@pytest.mark.parametrize("actor", ACTORS, ids=lambda a: a.__name__)
def test_every_message_that_can_reach_an_actor_has_a_handler(actor: type[HarmonyActor]) -> None:
    reach = INTERNAL[actor] | exported().get(actor, set())
    missing = sorted(t.__name__ for t in reach if actor.handler_for(t) is None)
    assert missing == [], f"{actor.__name__} has no handler for {missing}"
    for t in reach:  # the table names methods that exist
        assert callable(getattr(actor, actor.handler_for(t) or "")), t


def test_every_handler_is_reachable() -> None:
    """The other way round: a handler for a type nothing sends is dead code (or a row missing
    here)."""
    for actor in ACTORS:
        reach = INTERNAL[actor] | exported().get(actor, set())
        unused = sorted(t.__name__ for t in actor.handlers if t not in reach)
        assert unused == [], f"{actor.__name__} handles {unused}, which nothing sends it"


# -- the table is built per class ---------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    pass


@dataclass(frozen=True)
class Louder(Hello):
    pass


@dataclass(frozen=True)
class Stranger:
    pass


class Greeter(HarmonyActor):
    kind = "greeter"

    @handles(Hello)
    def on_hello(self, _: Hello) -> str:
        return "hello"


class Polite(Greeter):
    @handles(m.Ping)
    def on_ping(self, msg: m.Ping) -> m.Pong:
        return m.Pong(text=msg.text, site="here")


def test_handlers_are_inherited_and_found_for_subclasses_of_a_message() -> None:
    assert Greeter.handlers == {Hello: "on_hello"}
    assert Polite.handlers == {Hello: "on_hello", m.Ping: "on_ping"}
    assert Polite.handler_for(Louder) == "on_hello"
    assert Polite.handler_for(Stranger) is None
    assert Supervisor.handler_for(ChildFailed) == "on_child_failed"


def test_one_type_with_two_handlers_in_one_class_is_refused() -> None:
    with pytest.raises(TypeError, match="Hello handled by on_a and on_b"):

        class Twice(HarmonyActor):
            @handles(Hello)
            def on_a(self, _: Hello) -> None: ...

            @handles(Hello)
            def on_b(self, _: Hello) -> None: ...


# -- an unhandled message is loud, and the actor goes on ------------------------------------


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    with journaled(make_kit(), tmp_path) as k:
        yield k


def test_an_unhandled_tell_is_logged_and_journaled_and_the_actor_lives_on(
    kit: Kit, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ref = Greeter.start(kit.ctx, "agent/greeter", None)
    with caplog.at_level(logging.ERROR, logger="harmony.actors.base"):
        ref.tell(Stranger())
        assert ref.ask(Hello()) == "hello"  # after the stranger: still alive
    assert "greeter at agent/greeter does not handle Stranger" in caplog.text
    events = [e for e in read_journal(tmp_path / "journal.jsonl") if e.kind == "unhandled-message"]
    assert [(e.reason, e.detail) for e in events] == [
        (
            "greeter at agent/greeter does not handle Stranger",
            {"actor": "agent/greeter"},
        )
    ]


def test_an_unhandled_ask_from_the_mesh_is_answered_with_an_error(kit: Kit) -> None:
    ref = Greeter.start(kit.ctx, "agent/greeter", None)
    replies: list[wire.Message] = []
    done = threading.Event()

    def reply(message: wire.Message) -> None:
        replies.append(message)
        done.set()

    ref.tell(RemoteAsk(m.GetNotices(), reply))
    assert done.wait(5), "no reply to the remote ask"
    assert isinstance(replies[0], wire.ErrorReply)
    assert replies[0].code == wire.ERR_UNHANDLED
    assert "does not handle GetNotices" in replies[0].reason
    assert ref.is_alive()


def test_a_local_ask_of_an_unhandled_type_gets_nothing_and_the_actor_lives_on(kit: Kit) -> None:
    ref = Greeter.start(kit.ctx, "agent/greeter", None)
    assert ref.ask(Stranger(), timeout=5) is None
    assert ref.ask(Hello(), timeout=5) == "hello"
