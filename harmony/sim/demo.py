"""`harmony demo`: three sites on this machine, clustered, with example workloads, watched live.

This module starts and stops the demo mesh (`demo_mesh`) and has the plain Rich live view
(`harmony demo --no-tui`, and the fallback when stdout is not a terminal). The interactive
view lives in `harmony.tui.demo`, which uses `demo_mesh` from here: the TUI sits above the
simulation layer, never the other way round.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from harmony.client import collect_snapshots
from harmony.config import (
    FailoverTopologyConfig,
    HorizontalTopologyConfig,
    ProcessDriverConfig,
    WorkloadConfig,
)
from harmony.render import mesh_view
from harmony.sim.launch import LaunchError, LocalMesh
from harmony.sim.records import LEDGER_ENV

SITE_NAMES = "abcdefghijklmnopqrstuvwxyz"
MESH = "demo"


GEO_CONSTRAINT = 'jurisdiction in ["EU"]'
"""The geo workload's constraint: `site_labels` puts every third site (c, f, ...) in the US."""


def site_labels(sites: list[str]) -> dict[str, dict[str, str]]:
    """Labels for the demo's sites: two EU sites for each US one, so the geo workload has
    somewhere to fail over and somewhere it must never go."""
    out = {}
    for i, s in enumerate(sites):
        eu = i % 3 != 2
        out[s] = {
            "region": "eu-west" if eu else "us-east",
            "jurisdiction": "EU" if eu else "US",
            "provider": "demo",
        }
    return out


def demo_workloads(sites: list[str], workdir: Path | None = None) -> list[WorkloadConfig]:
    """One workload under each strategy, with different primaries so a kill shows both;
    `eu-archive`, restricted to the EU sites by a geo constraint (kill the EU sites and it stays
    down rather than start in the US; the TUI says why); and `web`, horizontal: two copies
    spread over the regions (slots `web--0`, `web--1`; kill a site and its slot moves, bring
    it back and the spread is restored).

    With `workdir`, the ledger's copies write their transfers through the fencing-token
    guard into ``<workdir>/ledger.db``, one SQLite file all the demo's sites share.
    """
    cmd = [sys.executable, "-m", "harmony.sim.example_workload"]
    rotated = sites[1:] + sites[:1]
    env = {LEDGER_ENV: str(workdir / "ledger.db")} if workdir is not None else {}
    return [
        WorkloadConfig(
            name="ledger",
            strategy="absolute-consistency",
            driver=ProcessDriverConfig(command=cmd, env=env),
            topology=FailoverTopologyConfig(primary=sites[0], standbys=sites[1:]),
        ),
        WorkloadConfig(
            name="inference",
            strategy="split-brain-allowed",
            driver=ProcessDriverConfig(command=cmd),
            topology=FailoverTopologyConfig(primary=rotated[0], standbys=rotated[1:]),
        ),
        WorkloadConfig(
            name="eu-archive",
            strategy="split-brain-allowed",
            driver=ProcessDriverConfig(command=cmd),
            topology=FailoverTopologyConfig(
                primary=sites[0], standbys=sites[1:], constraints=[GEO_CONSTRAINT]
            ),
        ),
        WorkloadConfig(
            name="web",
            strategy="split-brain-allowed",
            driver=ProcessDriverConfig(command=cmd),
            topology=HorizontalTopologyConfig(
                sites=list(sites),
                replicas=min(2, len(sites)),
                spread_label="region",
                settle=10.0,
            ),
        ),
    ]


def site_names(sites: int) -> list[str]:
    if not 1 <= sites <= len(SITE_NAMES):
        raise ValueError(f"--sites must be between 1 and {len(SITE_NAMES)}")
    return [f"site-{c}" for c in SITE_NAMES[:sites]]


@contextmanager
def demo_mesh(
    sites: int, workdir: str | None, console: Console | None = None
) -> Iterator[LocalMesh]:
    """Start the demo's sites (agents + embedded nats-servers); stop every process on exit,
    whatever happens (Ctrl-C included), and remove the temporary directory if we made one."""
    names = site_names(sites)
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="harmony-demo-")
        workdir = tmp.name
    mesh = LocalMesh(
        Path(workdir),
        mesh=MESH,
        sites=names,
        workloads=demo_workloads(names, Path(workdir)),
        site_labels=site_labels(names),
    )
    try:
        mesh.write_configs()
        if console is not None:
            with console.status(f"starting {sites} sites (agents + embedded nats-servers)..."):
                mesh.start()
            console.print(f"[green]mesh '{MESH}' is up[/] — configs and logs in {mesh.workdir}")
            console.print(secure_line(mesh))
            console.print(metrics_line(mesh))
        else:
            mesh.start()
        yield mesh
    finally:
        mesh.stop()
        if tmp is not None:
            tmp.cleanup()


def run_demo(
    sites: int = 3,
    workdir: str | None = None,
    duration: float = 0.0,
    view: Callable[[LocalMesh, float], None] | None = None,
) -> int:
    """Run the demo with `view(mesh, duration)` (default: the Rich live view)."""
    console = Console()
    try:
        site_names(sites)
    except ValueError as e:
        console.print(f"[red]{e}[/]")
        return 2
    try:
        with demo_mesh(sites, workdir, console) as mesh:
            (view or live_view)(mesh, duration)
    except LaunchError as e:
        console.print(f"[red]a site failed to start:[/] {e}")
        return 1
    except KeyboardInterrupt:
        console.print("stopping...")
    console.print("[green]demo stopped; no process left behind.[/]")
    return 0


def metrics_line(mesh: LocalMesh) -> str:
    """Where each site serves its Prometheus metrics (`curl` one of them)."""
    urls = [
        f"{s} http://127.0.0.1:{cfg.metrics.port}/metrics"
        for s, cfg in mesh.configs.items()
        if cfg.metrics.port
    ]
    return "metrics: " + ", ".join(urls)


def secure_line(mesh: LocalMesh) -> str:
    """What the demo says about its security (`make demo` must say the mesh is secure)."""
    if mesh.identity is None:
        return "[yellow]mesh is INSECURE: plaintext, anonymous (loopback only)[/]"
    return (
        "[green]mesh is secure: TLS (mutual, mesh CA) + nkeys, per-site permissions[/] — "
        f"keys in {mesh.mesh_dir}; this view connects as operator "
        f"{mesh.identity.name!r}"
    )


def live_view(mesh: LocalMesh, duration: float) -> None:
    """The plain view: every site's actor tree, redrawn twice a second, until Ctrl-C."""
    console = Console()
    conn = mesh.connect("harmony-demo")
    try:
        conn.wait_connected(10)
        started = time.monotonic()
        with Live(console=console, refresh_per_second=4, screen=False) as live:
            while not duration or time.monotonic() - started < duration:
                snaps = collect_snapshots(conn, MESH, timeout=1.0)
                hint = Text("Ctrl-C stops the demo and every process it started.", style="dim")
                live.update(Group(mesh_view(MESH, snaps), hint))
                time.sleep(0.5)
    finally:
        conn.close()
