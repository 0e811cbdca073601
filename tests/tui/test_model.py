"""The TUI's model, labels and commands, without a screen: pure functions of their input."""

from __future__ import annotations

import msgspec
from rich.console import Console

from harmony.actors.messages import (
    ActorInfo,
    CommandResult,
    DrainSite,
    FenceWorkload,
    MoveWorkload,
    PeerInfo,
    Snapshot,
)
from harmony.mesh import wire
from harmony.mesh.remote import RemoteError
from harmony.tui import commands, labels
from harmony.tui.commands import Action
from harmony.tui.feed import SnapshotsUpdate
from harmony.tui.model import Key, MeshModel
from harmony.tui.recording import Recording
from harmony.tui.widgets import detail_renderable


def snap(site: str, peers: dict[str, str], actors: list[ActorInfo] | None = None) -> Snapshot:
    return Snapshot(
        mesh="m",
        site=site,
        witness=False,
        incarnation="i",
        mono=0.0,
        wall=0.0,
        actors=actors or [ActorInfo(path="agent", kind="agent", state="running")],
        peers=[PeerInfo(site=p, state=s, last_heartbeat_age=0.5) for p, s in peers.items()],
    )


def run(state: str, pid: str) -> ActorInfo:
    return ActorInfo(path="agent/workload/w/run", kind="workload", state=state, detail={"pid": pid})


def test_first_poll_is_not_news_later_changes_are() -> None:
    model = MeshModel("m")
    a = snap("a", {"b": "alive"}, [ActorInfo(path="agent", kind="agent", state="running")])
    assert model.apply({"a": a, "b": snap("b", {"a": "alive"})}, at=1.0) == set()
    a2 = msgspec.structs.replace(a, actors=[*a.actors, run("running", "42")])
    changed = model.apply({"a": a2, "b": snap("b", {"a": "alive"})}, at=2.0)
    assert changed == {Key("a", "agent/workload/w/run")}
    assert model.changed_at[Key("a", "agent/workload/w/run")] == 2.0
    # Ages and counters tick without being news; a pid change is news.
    a3 = msgspec.structs.replace(a, actors=[*a.actors, run("running", "43")])
    assert model.apply({"a": a3, "b": snap("b", {"a": "alive"})}, at=3.0) == {
        Key("a", "agent/workload/w/run")
    }


def test_liveness_comes_from_peers_and_answers() -> None:
    model = MeshModel("m")
    model.apply({"a": snap("a", {"b": "alive", "c": "alive"}), "b": snap("b", {"a": "alive"})}, 1)
    assert model.sites["c"].state == "mute"  # peers hear it, it does not answer
    model.apply({"a": snap("a", {"b": "alive", "c": "silent"}), "b": snap("b", {"c": "silent"})}, 2)
    assert model.sites["c"].state == "silent" and not model.sites["c"].answered
    model.apply({"a": snap("a", {"c": "silent"}), "c": snap("c", {"a": "silent"})}, 3)
    assert model.sites["c"].state == "isolated"  # it answers us, its peers call it silent
    assert model.sites["b"].state == "unknown"  # nobody says anything about b now
    model.apply({}, 4)
    assert {v.state for v in model.sites.values()} == {"unknown"}
    assert set(model.sites) == {"a", "b", "c"}  # never forgotten


def test_tree_orders_nodes_and_hangs_workloads_under_the_agent() -> None:
    actors = [
        ActorInfo(path="agent/workload/w/run", kind="workload", state="running"),
        ActorInfo(path="agent/workload/w", kind="workload-supervisor", state="running"),
        ActorInfo(path="agent/peers", kind="peers", state="running"),
        ActorInfo(path="agent", kind="agent", state="running"),
        ActorInfo(path="agent/site", kind="site", state="running"),
    ]
    model = MeshModel("m")
    model.apply({"a": snap("a", {"b": "alive"}, actors)}, 1)
    tree = [(k.site, k.path, p.path if p else None) for k, p in model.tree()]
    assert tree == [
        ("a", "", None),
        ("a", "agent", ""),
        ("a", "agent/site", "agent"),
        ("a", "agent/peers", "agent"),
        ("a", "agent/workload/w", "agent"),
        ("a", "agent/workload/w/run", "agent/workload/w"),
        ("a", "agent/peers/@b", "agent/peers"),
        ("b", "", None),
    ]
    assert Key("a", "agent/workload/w/run").workload == "w"
    assert Key("a", "agent/peers/@b").peer == "b" and Key("a", "agent").workload == ""


def test_lease_time_left_counts_down_between_polls(recording: Recording) -> None:
    model = MeshModel("demo")
    for update in recording.updates():
        if isinstance(update, SnapshotsUpdate):
            model.apply(update.snaps, update.at)
    key = Key("site-b", "agent/workload/ledger")
    assert "lease left 5.1s" in labels.node_label(model, key, 1015.0).plain
    assert "lease left 3.1s" in labels.node_label(model, key, 1017.0).plain
    assert "lease left 0.0s" in labels.node_label(model, key, 1030.0).plain
    # A silent site's label is greyed; its lease is not counted down (we do not know).
    silent = labels.node_label(model, Key("site-a", "agent/workload/ledger"), 1016.0)
    assert silent.style == labels.GREY and "lease left" not in silent.plain


def test_actions_send_the_operator_messages_to_the_right_actor() -> None:
    fence = Action("fence", "a", "w")
    assert (fence.path, type(fence.message())) == ("agent/workload/w", FenceWorkload)
    move = Action("move", "a", "w", target="b")
    message = move.message()
    assert isinstance(message, MoveWorkload) and message.target == "b"
    drain = Action("drain", "a")
    assert (drain.path, type(drain.message())) == ("agent", DrainSite)
    assert fence.title == "Fence w on a?" and drain.title == "Drain site a?"


def test_outcomes_read_every_kind_of_answer() -> None:
    fence = Action("fence", "a", "w")
    assert commands.interpret(fence, None) == commands.Outcome(True, "fence w: accepted by a")
    assert commands.interpret(fence, CommandResult(ok=False, detail="busy")).text == (
        "fence w: refused: busy"
    )
    unhandled = RemoteError(wire.ERR_UNHANDLED, "agent does not handle DrainSite")
    out = commands.failure(Action("drain", "a"), unhandled)
    assert not out.ok and out.severity == "error"
    assert out.text == "drain a: the agent on a does not support DrainSite yet (unhandled-message)"
    assert "no answer from a" in commands.failure(fence, TimeoutError("5 s")).text
    assert commands.failure(fence, RemoteError("unknown-actor", "x")).text == (
        "fence w: unknown-actor: x"
    )


def test_kill_and_restart_only_with_the_demo_s_control(recording: Recording) -> None:
    feed = recording.feed()
    out = commands.execute(feed, Action("kill", "site-a"))
    assert not out.ok and "only the demo" in out.text
    done: list[str] = []
    control = commands.SiteControl(
        kill=lambda s: done.append(f"kill {s}"), restart=lambda s: done.append(f"restart {s}")
    )
    assert commands.execute(feed, Action("kill", "site-a"), control=control).ok
    assert commands.execute(feed, Action("restart", "site-a"), control=control).ok
    assert done == ["kill site-a", "restart site-a"]


def test_a_copy_in_an_unknown_state_is_shown_as_an_alarm() -> None:
    """The operator must see at once that a copy may still run and no fence was confirmed."""
    sup = ActorInfo(
        path="agent/workload/w",
        kind="workload-supervisor",
        state="running",
        detail={
            "strategy": "absolute-consistency",
            "phase": "unknown",
            "doubt": "stop hook exited with code 1",
            "fence_attempts": "3",
        },
    )
    actors = [ActorInfo(path="agent", kind="agent", state="running"), sup, run("unknown", "")]
    model = MeshModel("m")
    model.apply({"a": snap("a", {}, actors)}, 1.0)
    label = labels.node_label(model, Key("a", "agent/workload/w"), 1.0)
    assert "FENCE UNCONFIRMED" in label.plain and "stop hook exited with code 1" in label.plain
    assert "attempts 3" in label.plain
    assert any(span.style == labels.ALARM for span in label.spans)
    run_label = labels.node_label(model, Key("a", "agent/workload/w/run"), 1.0)
    assert "UNKNOWN" in run_label.plain
    assert any(span.style == labels.ALARM for span in run_label.spans)
    ok = msgspec.structs.replace(
        sup, detail={"strategy": "absolute-consistency", "phase": "running"}
    )
    model.apply({"a": snap("a", {}, [actors[0], ok, run("running", "7")])}, 2.0)
    assert (
        "FENCE UNCONFIRMED" not in labels.node_label(model, Key("a", "agent/workload/w"), 2.0).plain
    )


def test_a_horizontal_workload_shows_its_replicas_slots_and_why_fewer_run() -> None:
    steer = ActorInfo(
        path="agent/workload/web",
        kind="horizontal",
        state="running",
        detail={
            "replicas": "1/2",
            "slots": "0@a 1@-",
            "coordinator": "a",
            "why": "slot 1 stays down: no eligible site with room",
        },
    )
    model = MeshModel("m")
    model.apply(
        {"a": snap("a", {}, [ActorInfo(path="agent", kind="agent", state="running"), steer])}, 1.0
    )
    label = labels.node_label(model, Key("a", "agent/workload/web"), 1.0).plain
    assert label.startswith("web [horizontal] running")
    for part in ("replicas 1/2", "slots 0@a 1@-", "coordinator a", "why slot 1 stays down"):
        assert part in label, label
    # Its detail pane points at the slots for output: it runs no copy of its own, so there
    # is no run actor to ask (the TUI used to show "unknown-actor: no actor at .../web/run").
    console = Console(width=120, record=True)
    console.print(detail_renderable(model, Key("a", "agent/workload/web"), 1.0, None))
    shown = console.export_text()
    assert "its slots (web--0, ...) run the copies" in shown, shown
    assert "driver output" not in shown and "fetching" not in shown, shown
