"""The TUI against a real local mesh: real agents, real nats-servers, real workload processes.

The tests share one mesh (module scope) and run in file order: the last one kills a site.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from support.processes import pid_alive
from support.waiting import wait_for

from harmony.sim.launch import LocalMesh
from harmony.tui.app import HarmonyApp
from harmony.tui.commands import SiteControl
from harmony.tui.demo import restart_in
from harmony.tui.feed import MeshFeed
from harmony.tui.model import Key

SIZE = (160, 50)


def live_app(mesh: LocalMesh, control: SiteControl | None = None) -> HarmonyApp:
    # The TUI connects to b first: the kill test kills site c, not the TUI's own server.
    feed = MeshFeed(
        mesh.client_urls(["b", "a", "c"]), mesh.mesh, interval=0.5, identity=mesh.identity
    )
    return HarmonyApp(feed, control=control)


def tree_dump(app: HarmonyApp) -> str:
    return "\n".join(app.mesh_tree.label_of(k) for k in app.mesh_tree.keys)


def run_pid(app: HarmonyApp, site: str, workload: str) -> int | None:
    view = app.model.sites.get(site)
    info = view.actor(f"agent/workload/{workload}/run") if view else None
    pid = info.detail.get("pid", "") if info and info.state == "running" else ""
    return int(pid) if pid else None


def ledger_holder(app: HarmonyApp) -> str:
    """The site that runs the AC workload (usually the primary, a; at start-up a standby
    sometimes wins the lease first, which is legal)."""
    running = [s for s in "abc" if run_pid(app, s, "ledger")]
    return running[0] if len(running) == 1 else ""


def test_tree_shows_every_site_and_workload(live_mesh: LocalMesh) -> None:
    async def scenario() -> None:
        app = live_app(live_mesh)
        async with app.run_test(size=SIZE) as pilot:
            tree = app.mesh_tree
            await wait_for(
                pilot,
                lambda: (
                    all(tree.node_for(Key(s)) for s in "abc")
                    and ledger_holder(app)
                    and run_pid(app, "b", "inference")
                ),
                timeout=30,
                message=lambda: tree_dump(app),
            )
            for site in "abc":
                assert tree.label_of(Key(site)).startswith(f"{site} alive"), tree_dump(app)
                for workload in ("ledger", "inference"):
                    key = Key(site, f"agent/workload/{workload}")
                    assert tree.node_for(key) is not None, (key, tree_dump(app))
            h = ledger_holder(app)
            ledger = tree.label_of(Key(h, "agent/workload/ledger"))
            role = "primary" if h == "a" else "standby"
            assert f"AC {role} running ● active" in ledger
            assert f"lease held@{h}" in ledger and "lease left" in ledger
            lease = tree.label_of(Key(h, "agent/workload/ledger/lease"))
            assert lease.startswith("lease held") and f"holder {h}" in lease
            assert "SBA primary running" in tree.label_of(Key("b", "agent/workload/inference"))
            assert f"pid {run_pid(app, h, 'ledger')}" in tree.label_of(
                Key(h, "agent/workload/ledger/run")
            )
            assert "hb " in tree.label_of(Key("a", "agent/peers/@b"))
            assert tree.root.label.plain.startswith("mesh tui  3 sites: 3 alive")

    asyncio.run(scenario())


def test_fence_from_the_keyboard_stops_the_process(live_mesh: LocalMesh) -> None:
    async def scenario() -> None:
        app = live_app(live_mesh)
        async with app.run_test(size=SIZE) as pilot:
            h = await wait_for(pilot, lambda: ledger_holder(app), 30, lambda: tree_dump(app))
            assert isinstance(h, str)
            pid = run_pid(app, h, "ledger")
            assert pid is not None and pid_alive(pid)
            node = app.mesh_tree.node_for(Key(h, "agent/workload/ledger"))
            assert node is not None
            app.mesh_tree.move_cursor(node)
            await pilot.pause()
            await pilot.press("f")
            await wait_for(
                pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", 5, "no confirmation"
            )
            assert pid_alive(pid), "fenced before the confirmation"
            await pilot.press("y")
            await wait_for(pilot, lambda: not pid_alive(pid), 15, f"pid {pid} still alive")
            await wait_for(pilot, lambda: app.outcomes, 10, "no outcome reported")
            action, outcome = app.outcomes[-1]
            assert (action.kind, action.site, action.workload) == ("fence", h, "ledger")
            assert outcome.ok, outcome.text
            # The agent journals the operator's fence; the TUI shows it in the event log.
            await wait_for(
                pilot,
                lambda: any(e.kind == "operator-fence" and e.site == h for e in app.model.events),
                10,
                "no operator-fence event",
            )
            # The driver reports the fence; the run actor's line changed (highlighted). The
            # strategy may start a new copy right after (this site still holds the lease).
            await wait_for(
                pilot,
                lambda: any(e.kind == "driver-fenced" and e.site == h for e in app.model.events),
                10,
                lambda: "\n".join(f"{e.site} {e.kind}" for e in app.model.events),
            )
            run_key = Key(h, "agent/workload/ledger/run")
            await wait_for(pilot, lambda: run_key in app.model.changed_at, 10, "not marked")
        with contextlib.suppress(ProcessLookupError):  # never leave it running
            os.kill(pid, signal.SIGKILL)

    asyncio.run(scenario())


def test_site_killed_from_the_demo_keys_turns_silent_stays_and_comes_back(
    live_mesh: LocalMesh,
) -> None:
    """The demo's `k` (confirm with `y`) really kills the site: agent, server, workloads;
    `r` starts it again and the tree shows it answering again."""

    async def scenario() -> None:
        app = live_app(live_mesh, SiteControl(kill=live_mesh.kill, restart=restart_in(live_mesh)))
        async with app.run_test(size=SIZE) as pilot:
            tree = app.mesh_tree
            await wait_for(
                pilot,
                lambda: (
                    tree.label_of(Key("c")).startswith("c alive")
                    and tree.node_for(Key("c", "agent/workload/ledger"))
                ),
                30,
                lambda: tree_dump(app),
            )
            app.mesh_tree.move_cursor(tree.node_for(Key("c")))
            await pilot.pause()
            await pilot.press("k")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", 5)
            assert live_mesh.procs["c"].running
            await pilot.press("y")
            await wait_for(pilot, lambda: not live_mesh.procs["c"].running, 30, "c still runs")
            await wait_for(
                pilot,
                lambda: tree.label_of(Key("c")).startswith("c silent"),
                20,
                lambda: tree_dump(app),
            )
            # Last known state stays, greyed, with how long it has not answered.
            assert "last known state" in tree.label_of(Key("c"))
            assert tree.node_for(Key("c", "agent/workload/ledger")) is not None
            assert not app.model.sites["c"].answered
            assert "silent" in tree.label_of(Key("a", "agent/peers/@c"))
            assert "1 silent" in tree.root.label.plain
            await wait_for(
                pilot,
                lambda: bool(app.outcomes) and app.outcomes[-1][0].kind == "kill",
                30,
                "the kill reported no outcome",
            )
            assert app.outcomes[-1][1].ok, app.outcomes[-1][1].text
            assert live_mesh.server_pids("c") == []
            await pilot.press("r", "y")
            await wait_for(
                pilot,
                lambda: tree.label_of(Key("c")).startswith("c alive"),
                60,
                lambda: tree_dump(app),
            )
            # The restart worker reports once its own wait for the site ends, which can
            # come after the tree already shows the site answering.
            await wait_for(
                pilot,
                lambda: bool(app.outcomes) and app.outcomes[-1][0].kind == "restart",
                60,
                "the restart reported no outcome",
            )
            assert app.outcomes[-1][1].ok, app.outcomes[-1][1].text
            await wait_for(
                pilot,
                lambda: app.model.sites["c"].answered,
                30,
                lambda: tree_dump(app),
            )

    asyncio.run(scenario())
