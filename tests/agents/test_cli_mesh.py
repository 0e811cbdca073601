"""`harmony status` and `harmony demo` against real meshes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from support.commands import harmony as run_harmony

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
    assert "no process left behind" in out.stdout
    assert pids_mentioning(str(tmp_path)) == []
