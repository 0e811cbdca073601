"""`harmony tui` at 1,000 sites: how long until the summary is on the screen.

    python bench/tui_start.py [--sites 1000] [--runs 3]

One secure nats-server (TLS + nkeys) whose roster names N sites, each of which writes one
synthetic summary with its own nkey (`bench/status.py` sets it up). Then, `--runs` times, the
TUI (`HarmonyApp` with a live `MeshFeed`, headless through Textual's `run_test`, 160x50) as
the operator:

* start → summary shown: from creating the app to the summary pane naming N sites and the
  tree holding N site nodes (connect with TLS, one read of the sites bucket, build the tree);
* filter: from the last key of a `/` filter to the tree narrowed to the 10 matching sites;
* a re-label of the whole tree (the once-a-second tick) at N sites, in the app.

Every process is stopped on exit. The numbers go to stdout as a table.

Latest results, and the command: BENCHMARKS.md, "status and TUI at 1,000 sites".
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from status import MESH, make_mesh, start_server, write_all

from harmony.security.identity import load_identity
from harmony.tui.app import HarmonyApp
from harmony.tui.feed import MeshFeed

SIZE = (160, 50)


async def one_run(url: str, admin: Path, n: int) -> tuple[float, float, float]:
    """(start → summary, filter → narrowed, one full re-label), in seconds."""
    t0 = time.perf_counter()
    app = HarmonyApp(MeshFeed([url], MESH, identity=load_identity(admin)))
    async with app.run_test(size=SIZE) as pilot:

        def sites() -> int:
            return sum(1 for k in app.mesh_tree.keys if k.path == "")

        while not (app.model.large and sites() == n):
            await pilot.pause(0.01)
            if time.perf_counter() - t0 > 120:
                raise TimeoutError("the summary did not show within 120 s")
        await pilot.pause()  # the frame with the summary drawn
        shown = time.perf_counter() - t0
        await pilot.press("slash", "s", "0", "1")
        t1 = time.perf_counter()
        await pilot.press("2")
        while sites() != 10:
            await pilot.pause(0.005)
        await pilot.pause()
        filtered = time.perf_counter() - t1
        await pilot.press("escape")
        while sites() != n:
            await pilot.pause(0.01)
        t2 = time.perf_counter()
        app.refresh_view()
        relabel = time.perf_counter() - t2
    return shown, filtered, relabel


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sites", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    n = args.sites
    results: list[tuple[float, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-tui-") as tmp:
        root = Path(tmp)
        mesh_dir, seeds = make_mesh(root, n)
        server = start_server(root, mesh_dir)
        try:
            asyncio.run(write_all(server.client_url, n, mesh_dir, seeds))
            admin = mesh_dir / "identities" / "admin"
            for _ in range(args.runs):
                results.append(asyncio.run(one_run(server.client_url, admin, n)))
        finally:
            server.stop(grace=3)
    t = Table(title=f"harmony tui at {n} sites (secure nats-server, one KV bucket)")
    for col in ("what", "median ms", "max ms", "runs"):
        t.add_column(col)
    for i, what in enumerate(
        (f"start → summary shown ({n} sites)", 'filter "s012" → 10 sites shown', "re-label tick")
    ):
        times = [r[i] for r in results]
        t.add_row(
            what,
            f"{statistics.median(times) * 1000:.0f}",
            f"{max(times) * 1000:.0f}",
            str(len(times)),
        )
    Console().print(t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
