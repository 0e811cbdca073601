"""Take the TUI screenshots of the README from a real demo mesh (3 local sites).

    .venv/bin/python docs/screenshots/make_screenshots.py

Starts the demo mesh, runs the TUI headless, and saves SVGs (as Textual saves them) here:
the healthy mesh with a workload's detail, the kill confirmation, and the tree after the
failover. Then a second mesh whose site-a cannot run its fence hook: its copy's state stays
unknown (FENCE UNCONFIRMED) and site-b takes the workload. Every process it starts is
stopped at the end.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from textual.pilot import Pilot

from harmony import interrupts
from harmony.config import FailoverTopologyConfig, HooksDriverConfig, Timings, WorkloadConfig
from harmony.sim.demo import MESH, demo_mesh
from harmony.sim.launch import LocalMesh
from harmony.tui.app import HarmonyApp
from harmony.tui.commands import SiteControl
from harmony.tui.demo import restart_in
from harmony.tui.feed import MeshFeed
from harmony.tui.model import Key

HERE = Path(__file__).resolve().parent
SIZE = (160, 46)


async def until(pilot: Pilot[None], what: str, predicate: Callable[[], object], t: float) -> None:
    deadline = time.monotonic() + t
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {t:g} s for {what}")
        await pilot.pause(0.1)


def runs(app: HarmonyApp, site: str, workload: str) -> bool:
    view = app.model.sites.get(site)
    info = view.actor(f"agent/workload/{workload}/run") if view else None
    return bool(view and view.answered and info and info.state == "running")


def spread(app: HarmonyApp, site: str) -> bool:
    """`web` runs its two copies, one in the US (site-c): the rebalance after boot is done."""
    view = app.model.sites.get(site)
    info = view.actor("agent/workload/web") if view else None
    d = info.detail if info else {}
    return d.get("replicas") == "2/2" and "site-c" in d.get("slots", "") and not d.get("why")


async def shoot(mesh: LocalMesh) -> None:
    # The TUI connects through site-c: killing site-a must not cut the TUI off.
    feed = MeshFeed(mesh.client_urls(["site-c", "site-b"]), MESH, identity=mesh.identity)
    app = HarmonyApp(feed, control=SiteControl(kill=mesh.kill, restart=restart_in(mesh)))
    async with app.run_test(size=SIZE) as pilot:
        tree = app.mesh_tree
        await until(
            pilot,
            "both workloads running",
            lambda: runs(app, "site-a", "ledger") and runs(app, "site-b", "inference"),
            60,
        )
        await pilot.pause(4)  # let the start-up highlights fade and output accumulate
        tree.move_cursor(tree.node_for(Key("site-a", "agent/workload/ledger")))
        await until(pilot, "output", lambda: ("site-a", "ledger") in app.outputs, 10)
        await pilot.pause(0.5)
        app.save_screenshot("tui-mesh.svg", str(HERE))
        # The topologies: `web`'s two slots spread over the regions, as its coordinator
        # sees them, next to the site labels and `eu-archive`'s geo constraint.
        await until(pilot, "web spread over the regions", lambda: spread(app, "site-a"), 60)
        tree.move_cursor(tree.node_for(Key("site-a", "agent/workload/web")))
        await pilot.pause(0.5)
        app.save_screenshot("tui-topologies.svg", str(HERE))
        tree.move_cursor(tree.node_for(Key("site-a")))
        await pilot.pause()
        await pilot.press("k")
        await until(pilot, "confirmation", lambda: type(app.screen).__name__ == "ConfirmScreen", 5)
        app.save_screenshot("tui-confirm-kill.svg", str(HERE))
        await pilot.press("y")
        await until(
            pilot,
            "failover",
            lambda: (
                app.model.sites["site-a"].state == "silent"
                and (runs(app, "site-b", "ledger") or runs(app, "site-c", "ledger"))
            ),
            60,
        )
        holder = "site-b" if runs(app, "site-b", "ledger") else "site-c"
        tree.move_cursor(tree.node_for(Key(holder, "agent/workload/ledger")))
        await until(pilot, "output", lambda: (holder, "ledger") in app.outputs, 10)
        await pilot.pause(0.5)
        app.save_screenshot("tui-failover.svg", str(HERE))


def unconfirmed(workdir: Path) -> LocalMesh:
    """A mesh whose site-a's fence hook always fails ("ipmi unreachable")."""
    hooks = HooksDriverConfig(
        start="true",
        stop="true",
        fence='if [ "$HARMONY_SITE" = site-a ]; then echo ipmi unreachable; exit 1; fi',
        timeout=5,
    )
    sites = ["site-a", "site-b", "site-c"]
    w = WorkloadConfig(
        name="db",
        strategy="absolute-consistency",
        driver=hooks,
        topology=FailoverTopologyConfig(primary=sites[0], standbys=sites[1:]),
    )
    return LocalMesh(workdir, mesh="legacy", sites=sites, workloads=[w], timings=Timings())


async def shoot_unconfirmed(mesh: LocalMesh) -> None:
    app = HarmonyApp(MeshFeed(mesh.client_urls(), "legacy", identity=mesh.identity))
    async with app.run_test(size=SIZE) as pilot:

        def doubted() -> bool:
            view = app.model.sites.get("site-a")
            info = view.actor("agent/workload/db") if view else None
            return bool(info and info.detail.get("doubt")) and runs(app, "site-b", "db")

        await until(pilot, "site-a unconfirmed, site-b running", doubted, 60)
        await pilot.pause(4)  # let the highlights fade
        app.mesh_tree.move_cursor(app.mesh_tree.node_for(Key("site-a", "agent/workload/db")))
        await until(pilot, "output", lambda: ("site-a", "db") in app.outputs, 10)
        await pilot.pause(0.5)
        app.save_screenshot("tui-fence-unconfirmed.svg", str(HERE))


def main() -> int:
    interrupts.install()  # SIGTERM too: the meshes' `with` blocks stop every process
    with demo_mesh(3, None) as mesh:
        asyncio.run(shoot(mesh))
    with tempfile.TemporaryDirectory(prefix="harmony-shots-") as tmp, unconfirmed(Path(tmp)) as m:
        m.start(timeout=60)
        asyncio.run(shoot_unconfirmed(m))
    print(f"screenshots saved in {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
