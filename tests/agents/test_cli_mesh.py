"""`harmony status` and `harmony demo` against real meshes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from support.commands import harmony as run_harmony
from support.waiting import wait_until

from harmony.client import collect_summaries
from harmony.mesh.connection import MeshConnection
from harmony.mesh.summaries import Summary
from harmony.sim.launch import LocalMesh, pids_mentioning


def harmony(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Wide output, and none of this environment (no venv on PATH)."""
    return run_harmony(*args, timeout=timeout, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


def test_status_prints_every_site_tree(mesh3: LocalMesh) -> None:
    out = harmony("status", "--config", str(mesh3.procs["a"].config_path))
    assert out.returncode == 0, out.stderr
    for text in (
        "mesh t3",
        "3 site(s) answered",
        "site a",
        "site b",
        "site c",
        "[agent]",
        "[site]",
        "[peers]",
        "[workload-supervisor]",
        "[workload]",
        "max 5 restarts in 30s",
        "last heartbeat",
    ):
        assert text in out.stdout, text


def test_status_json_is_machine_readable(mesh3: LocalMesh) -> None:
    url = mesh3.client_urls(["b"])[0]
    operator = str(mesh3.mesh_dir / "identities" / "operator")
    out = harmony("status", "--server", url, "--mesh", "t3", "--json", "--identity", operator)
    assert out.returncode == 0, out.stderr
    snaps = json.loads(out.stdout)
    assert sorted(s["site"] for s in snaps) == ["a", "b", "c"]
    for s in snaps:
        paths = {a["path"] for a in s["actors"]}
        assert "agent/site" in paths
        assert all(p["state"] == "alive" for p in s["peers"])


def test_demo_runs_three_sites_and_leaves_nothing(tmp_path: Path) -> None:
    out = harmony("demo", "--no-tui", "--dir", str(tmp_path), "--duration", "4", timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "mesh 'demo' is up" in out.stdout
    assert "mesh is secure: TLS (mutual, mesh CA) + nkeys" in out.stdout
    assert "3 site(s) answered" in out.stdout
    for site in ("site-a", "site-b", "site-c"):
        assert site in out.stdout
    assert "ledger" in out.stdout and "inference" in out.stdout
    # The geo workload, and the labels that keep it in the EU (site-c is the US one).
    assert "eu-archive" in out.stdout
    assert "web--0" in out.stdout and "web--1" in out.stdout  # the horizontal one's slots
    assert "jurisdiction=EU" in out.stdout and "jurisdiction=US" in out.stdout
    assert "no process left behind" in out.stdout
    assert pids_mentioning(str(tmp_path)) == []


def settled(conn: MeshConnection) -> dict[str, Summary]:
    """Every site's summary once each one was written after its site settled (a summary is
    written every 5 s: one written during start-up may still show peers unknown)."""
    found: dict[str, Summary] = {}

    def ready() -> bool:
        found.clear()
        found.update(collect_summaries(conn, "t3"))
        return (
            set(found) == {"a", "b", "c"}
            and all(
                not v.stale and v.value.peers == {"alive": 2} and v.value.placed == ["w"]
                for v in found.values()
            )
            and found["a"].value.workloads == {"running": 1}
        )

    wait_until(ready, 30, message=lambda: f"not every site's summary shows it settled: {found}")
    return found


def test_every_agent_writes_its_summary(mesh3: LocalMesh, conn: MeshConnection) -> None:
    found = settled(conn)
    for site in ("a", "b", "c"):
        v = found[site].value
        assert (v.site, v.state, v.placed) == (site, "running", ["w"])
        assert v.unhealthy == [] and v.unhealthy_total == 0
    assert found["a"].value.workloads == {"running": 1}


def test_status_details_on_demand(mesh3: LocalMesh, conn: MeshConnection) -> None:
    config = str(mesh3.procs["a"].config_path)
    settled(conn)
    out = harmony("status", "--config", config, "--site", "b")
    assert out.returncode == 0, out.stderr
    assert "site b" in out.stdout and "[peers]" in out.stdout and "site a" not in out.stdout
    out = harmony("status", "--config", config, "--workload", "w")
    assert out.returncode == 0, out.stderr
    for text in ("site a", "site b", "site c", "[workload-supervisor]", "running on"):
        assert text in out.stdout, text
    assert "[peers]" not in out.stdout and "[site]" not in out.stdout
    out = harmony("status", "--config", config, "--all")  # today's view, whatever the size
    assert out.returncode == 0 and "3 site(s) answered" in out.stdout, out.stderr
