"""`harmony status`'s rendering: what an operator must not miss."""

from __future__ import annotations

from rich.console import Console

from harmony.actors.messages import ActorInfo, Snapshot
from harmony.render import site_tree


def status_text(actors: list[ActorInfo]) -> str:
    snap = Snapshot(
        mesh="m",
        site="a",
        witness=False,
        incarnation="i",
        mono=0.0,
        wall=0.0,
        actors=[ActorInfo(path="agent", kind="agent", state="running"), *actors],
        peers=[],
    )
    console = Console(width=200, record=True, color_system=None)
    console.print(site_tree(snap))
    return console.export_text()


def test_status_flags_a_copy_whose_fence_is_unconfirmed() -> None:
    sup = ActorInfo(
        path="agent/workload/w",
        kind="workload-supervisor",
        state="running",
        detail={"phase": "unknown", "doubt": "probe failed: exited with code 1"},
    )
    run = ActorInfo(path="agent/workload/w/run", kind="workload", state="unknown")
    text = status_text([sup, run])
    assert text.count("FENCE UNCONFIRMED") == 2, text
    assert "probe failed: exited with code 1" in text
    calm = ActorInfo(path="agent/workload/w", kind="workload-supervisor", state="running")
    assert "FENCE UNCONFIRMED" not in status_text([calm])
