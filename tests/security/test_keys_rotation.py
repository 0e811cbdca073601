"""Rotating a site's keys while the mesh runs: the old seed is refused, the new one gets in,
the site's own agent moves to the new key, and no workload fails over."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from support.waiting import run_async, wait_until

from harmony.client import collect_snapshots
from harmony.config import FailoverTopologyConfig, ProcessDriverConfig, Timings, WorkloadConfig
from harmony.mesh.connection import MeshConnection
from harmony.security.identity import Identity, public_key_of
from harmony.security.material import MeshDir
from harmony.sim.launch import LocalMesh
from harmony.sim.observe import runners

pytestmark = pytest.mark.mesh

MESH = "rot"


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[LocalMesh]:
    m = LocalMesh(
        tmp_path / "mesh",
        mesh=MESH,
        sites=("a", "b"),
        timings=Timings(heartbeat_interval=0.3, ask_timeout=3.0),
        workloads=[
            WorkloadConfig(
                name="ledger",
                driver=ProcessDriverConfig(command=["sleep", "600"]),
                topology=FailoverTopologyConfig(primary="b", standbys=["a"]),
            )
        ],
    )
    try:
        m.start(timeout=90)
        yield m
    finally:
        m.stop()


async def _connect(url: str, ident: Identity, seed: Path) -> str:
    """ "" when a connection with `ident`'s TLS and the nkey `seed` gets in, else the error."""
    kw: dict[str, Any] = {**ident.connect_kwargs(), "nkeys_seed": str(seed)}
    try:
        nc = await nats.connect(
            url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3, **kw
        )
    except Exception as e:
        return str(e) or type(e).__name__
    await nc.close()
    return ""


def _agent_key(mesh: LocalMesh, site: str) -> str | None:
    """The nkey `site`'s agent is connected with, to whichever server of the mesh it is
    connected to (after a disconnect it may go to another site's; monitoring /connz)."""
    for server in mesh.configs:
        port = mesh.configs[server].nats.http_port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/connz?auth=1", timeout=2) as r:
            conns = json.load(r)["connections"] or []
        for c in conns:
            if c.get("name") == f"harmony-{MESH}-{site}":
                return str(c.get("authorized_user") or c.get("nkey") or "")
    return None


def test_rotating_a_running_sites_nkey(mesh: LocalMesh, tmp_path: Path) -> None:
    watch: MeshConnection = mesh.connect("test-rotate", ["a"])
    try:
        watch.wait_connected(10)

        def on_b() -> bool:
            return runners(collect_snapshots(watch, MESH, 1.0), "ledger") == {"b"}

        wait_until(on_b, 60, message="ledger never ran on its primary b")
        ident = mesh.identity_of("b")
        old_seed = tmp_path / "old.seed"
        shutil.copy(ident.seed_file, old_seed)
        old_key = public_key_of(old_seed)
        assert _agent_key(mesh, "b") == old_key
        url = mesh.client_urls(["b"])[0]

        new_key = MeshDir(mesh.mesh_dir).rotate("b")
        assert new_key != old_key and public_key_of(ident.seed_file) == new_key
        rotated = time.monotonic()

        # Each server rereads the roster within its poll: the old seed is refused everywhere.
        for site in ("a", "b"):
            site_url = mesh.client_urls([site])[0]
            wait_until(
                lambda u=site_url: (
                    "authorization" in run_async(_connect(u, ident, old_seed)).lower()
                ),
                15,
                message=f"the old seed of b still connects to {site}",
            )
        assert run_async(_connect(url, ident, ident.seed_file)) == "", "the new seed is refused"
        # b's agent lost its connection (its key left the roster) and came back with the new.
        wait_until(lambda: _agent_key(mesh, "b") == new_key, 15, message="agent b kept old key")

        # No failover: the ledger stays on b through more than a lease TTL.
        ttl = mesh.timings.lease_ttl
        deadline = rotated + ttl + 2
        while time.monotonic() < deadline:
            snaps = collect_snapshots(watch, MESH, 1.0)
            assert set(snaps) == {"a", "b"}, f"a site stopped answering: {sorted(snaps)}"
            assert runners(snaps, "ledger") == {"b"}, "the ledger moved after the rotation"
            time.sleep(0.2)
        journal = (mesh.workdir / "a" / "journal.jsonl").read_text()
        assert not any(
            json.loads(line).get("kind") == "start" for line in journal.splitlines() if line
        ), "a started the ledger"
    finally:
        watch.close()
    assert mesh.permission_violations() == []


def test_a_reader_added_to_a_running_mesh_watches_but_cannot_command(mesh: LocalMesh) -> None:
    import subprocess
    import sys

    from harmony.actors.messages import Ping
    from harmony.actors.site import SITE_PATH
    from harmony.mesh import subjects, wire
    from harmony.security.identity import load_identity

    md = MeshDir(mesh.mesh_dir)
    md.add_identity("watcher", "reader")
    reader_dir = md.identity_dir("watcher")
    url = mesh.client_urls(["a"])[0]

    def status() -> bool:  # the servers take the new roster within their poll
        args = ["status", "--server", url, "--mesh", MESH, "--json"]
        args += ["--identity", str(reader_dir), "--timeout", "2"]
        out = subprocess.run(
            [sys.executable, "-m", "harmony", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.returncode == 0 and sorted(s["site"] for s in json.loads(out.stdout)) == [
            "a",
            "b",
        ]

    wait_until(status, 30, message="the new reader could not watch the mesh")
    conn = MeshConnection([url], "reader", identity=load_identity(reader_dir)).start()
    try:
        conn.wait_connected(10)
        ask = subjects.actor(MESH, "b", subjects.ASK, subjects.OPERATOR, SITE_PATH)
        with pytest.raises(TimeoutError):
            conn.request(ask, wire.encode(Ping(text="may I?")), timeout=2)
    finally:
        conn.close()
    wait_until(
        lambda: any(ask in line for line in mesh.permission_violations()),
        10,
        message="the server did not refuse the reader's ask",
    )
