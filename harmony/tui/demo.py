"""`harmony demo` with the TUI: the local demo mesh, watched and driven interactively.

The demo adds one action the real TUI does not have: `k` kills the selected site (its
agent, its nats-server and its workloads, like a crash), so a user can watch the other
sites mark it silent and take its workloads over.
"""

from __future__ import annotations

import sys

from harmony.sim.demo import MESH, live_view, run_demo
from harmony.sim.launch import LocalMesh
from harmony.tui.app import HarmonyApp, route_logging
from harmony.tui.feed import MeshFeed


def tui_view(mesh: LocalMesh, duration: float) -> None:
    """Run the TUI on the demo mesh until the user quits (or `duration` s pass)."""
    route_logging()
    feed = MeshFeed(mesh.client_urls(), MESH)
    app = HarmonyApp(feed, kill_site=mesh.kill)
    if duration:
        app.call_later(lambda: app.set_timer(duration, app.exit))
    app.run()


def run_demo_tui(sites: int, workdir: str | None, duration: float, tui: bool = True) -> int:
    """The TUI when asked for and stdout is a terminal; the plain Rich view otherwise."""
    if tui and not sys.stdout.isatty():
        print("stdout is not a terminal: showing the plain live view (--no-tui)")
        tui = False
    return run_demo(sites, workdir, duration, view=tui_view if tui else live_view)
