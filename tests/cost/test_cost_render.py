"""`harmony status --workload W` of a cost workload: the prices its runner decided from and
why it runs there, in one line under the table."""

from __future__ import annotations

from rich.console import Console

from harmony.actors.messages import ActorInfo, Snapshot
from harmony.render import workload_view


def snap(site: str, *actors: ActorInfo) -> Snapshot:
    return Snapshot(
        mesh="m",
        site=site,
        witness=False,
        incarnation="i",
        mono=0.0,
        wall=0.0,
        actors=[ActorInfo(path="agent", kind="agent", state="running"), *actors],
        peers=[],
    )


def test_the_runner_says_which_prices_it_decided_from_and_why() -> None:
    sup = ActorInfo(
        path="agent/workload/batch",
        kind="workload-supervisor",
        state="running",
        detail={"phase": "running", "strategy": "absolute-consistency"},
    )
    why = "no site saves more than min_saving"
    runner = ActorInfo(
        path="agent/workload/batch/cost",
        kind="cost",
        state="deciding",
        detail={"prices": "a=5 b=2 c=4", "decision": "stay", "why": why},
    )
    idle = ActorInfo(
        path="agent/workload/batch/cost",
        kind="cost",
        state="idle",
        detail={"prices": "a=5 b=2 c=4", "why": "the site running it decides"},
    )
    console = Console(width=300, record=True, color_system=None)
    console.print(workload_view("batch", {"b": snap("b", sup, runner), "a": snap("a", idle)}))
    text = console.export_text()
    assert f"cost (decided on b): prices a=5 b=2 c=4; {why}" in text, text
    assert text.count("cost (decided on") == 1
