"""`harmony demo` with the TUI: the local demo mesh, watched and driven interactively.

The demo adds two actions the real TUI does not have: `k` kills the selected site (its
agent, its nats-server and its workloads, like a crash), so a user can watch the other
sites mark it silent and take its workloads over; `r` starts it again.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from harmony.sim.demo import MESH, live_view, run_demo
from harmony.sim.launch import LocalMesh
from harmony.tui.app import HarmonyApp, route_logging
from harmony.tui.commands import SiteControl
from harmony.tui.feed import MeshFeed


def tui_view(mesh: LocalMesh, duration: float) -> None:
    """Run the TUI on the demo mesh until the user quits (or `duration` s pass)."""
    route_logging()
    # Through the last site first: killing site-a (the ledger's primary) then shows the
    # failover without also cutting the TUI's own connection (killing the last one does).
    feed = MeshFeed(mesh.client_urls(reversed(list(mesh.configs))), MESH, identity=mesh.identity)
    app = HarmonyApp(feed, control=SiteControl(kill=mesh.kill, restart=restart_in(mesh)))
    if duration:
        app.call_later(lambda: app.set_timer(duration, app.exit))
    app.run()


def restart_in(mesh: LocalMesh) -> Callable[[str], None]:
    """Start a killed site again (its agent starts its nats-server); returns once it is
    ready, without waiting for the whole mesh to re-form (the TUI shows that happen)."""

    def restart(site: str) -> None:
        mesh.start([site], wait_formed=False)

    return restart


def run_demo_tui(sites: int, workdir: str | None, duration: float, tui: bool = True) -> int:
    """The TUI when asked for and stdout is a terminal; the plain Rich view otherwise."""
    if tui and not sys.stdout.isatty():
        print("stdout is not a terminal: showing the plain live view (--no-tui)")
        tui = False
    return run_demo(sites, workdir, duration, view=tui_view if tui else live_view)
