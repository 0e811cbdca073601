"""`harmony demo`: three sites on this machine, clustered, with example workloads, watched live."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from harmony.client import collect_snapshots
from harmony.config import (
    FailoverTopologyConfig,
    ProcessDriverConfig,
    Timings,
    WorkloadConfig,
)
from harmony.mesh.connection import MeshConnection
from harmony.render import mesh_view
from harmony.sim.launch import LaunchError, LocalMesh

SITE_NAMES = "abcdefghijklmnopqrstuvwxyz"


def demo_workloads(sites: list[str]) -> list[WorkloadConfig]:
    cmd = [sys.executable, "-m", "harmony.sim.example_workload"]
    rotated = sites[1:] + sites[:1]
    return [
        WorkloadConfig(
            name="ledger",
            strategy="absolute-consistency",
            driver=ProcessDriverConfig(command=cmd),
            topology=FailoverTopologyConfig(primary=sites[0], standbys=sites[1:]),
        ),
        WorkloadConfig(
            name="inference",
            strategy="split-brain-allowed",
            driver=ProcessDriverConfig(command=cmd),
            topology=FailoverTopologyConfig(primary=rotated[0], standbys=rotated[1:]),
        ),
    ]


def run_demo(sites: int = 3, workdir: str | None = None, duration: float = 0.0) -> int:
    console = Console()
    if not 1 <= sites <= len(SITE_NAMES):
        console.print(f"[red]--sites must be between 1 and {len(SITE_NAMES)}[/]")
        return 2
    names = [f"site-{c}" for c in SITE_NAMES[:sites]]
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="harmony-demo-")
        workdir = tmp.name
    mesh = LocalMesh(
        Path(workdir),
        mesh="demo",
        sites=names,
        workloads=demo_workloads(names),
        timings=Timings(heartbeat_interval=0.5),
    )
    conn = None
    try:
        mesh.write_configs()
        with console.status(f"starting {sites} sites (agents + embedded nats-servers)..."):
            mesh.start()
        console.print(f"[green]mesh 'demo' is up[/] — configs and logs in {mesh.workdir}")
        conn = MeshConnection(mesh.client_urls(), "harmony-demo").start()
        conn.wait_connected(10)
        started = time.monotonic()
        with Live(console=console, refresh_per_second=4, screen=False) as live:
            while not duration or time.monotonic() - started < duration:
                snaps = collect_snapshots(conn, "demo", timeout=1.0)
                hint = Text("Ctrl-C stops the demo and every process it started.", style="dim")
                live.update(Group(mesh_view("demo", snaps), hint))
                time.sleep(0.5)
    except LaunchError as e:
        console.print(f"[red]a site failed to start:[/] {e}")
        return 1
    except KeyboardInterrupt:
        console.print("stopping...")
    finally:
        if conn is not None:
            conn.close()
        mesh.stop()
        if tmp is not None:
            tmp.cleanup()
    console.print("[green]demo stopped; no process left behind.[/]")
    return 0
