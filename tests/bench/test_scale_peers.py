"""The simulated peers of `bench/scale.py --simulated` against a real secure nats-server:
five peers connect with their own identities, publish real heartbeats on their own
subjects, answer a snapshot request, and leave nothing behind when stopped."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from support.nats_servers import Node
from support.waiting import wait_until

from harmony.actors.messages import Heartbeat, Snapshot, SnapshotRequest
from harmony.config import Timings
from harmony.mesh import subjects, wire
from harmony.mesh.connection import MeshConnection
from harmony.mesh.server import EmbeddedServer
from harmony.mesh.server_conf import ServerSecurity
from harmony.security.identity import load_identity, site_identity
from harmony.security.material import init_mesh

pytestmark = pytest.mark.mesh

M = "simpeers"
BENCH = Path(__file__).resolve().parents[2] / "bench" / "scale_peers.py"


def _load_harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scale_peers", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


peers_mod = _load_harness()


def _connections(server: EmbeddedServer) -> list[str]:
    with urllib.request.urlopen(f"{server.http_url}/connz", timeout=2) as r:
        return [c.get("name", "") for c in json.load(r).get("connections", [])]


@pytest.fixture
def server(tmp_path: Path, make_nats_server: Callable[..., Node]) -> tuple[Path, EmbeddedServer]:
    md = init_mesh(tmp_path / "mesh", M, {"a": ()}, operators=["admin"])
    names = [f"p{i}" for i in range(5)]
    peers_mod.add_peers(md.path, names)  # before the start: the server renders them in
    security = ServerSecurity(site_identity(md.path, "a"), md.roster_file, {})
    node = make_nats_server("a", supervise=False, cluster_name=M, security=security)
    return md.path, node.server


def test_five_simulated_peers_beat_answer_and_stop_cleanly(
    tmp_path: Path, server: tuple[Path, EmbeddedServer]
) -> None:
    mesh_dir, srv = server
    names = [f"p{i}" for i in range(5)]
    admin = load_identity(mesh_dir / "identities" / "admin")
    conn = MeshConnection([srv.client_url], "test-admin", identity=admin).start()
    seen: dict[str, Heartbeat] = {}
    lock = threading.Lock()

    def on_hb(msg: object) -> None:
        hb = wire.decode(msg.data)  # type: ignore[attr-defined]
        assert isinstance(hb, Heartbeat)
        assert msg.subject == subjects.heartbeat(M, hb.site)  # type: ignore[attr-defined]
        with lock:
            seen[hb.site] = hb

    peers = peers_mod.PeersProcess.start(
        tmp_path / "peers", mesh_dir, M, [srv.client_url], names, known=["a"], timeout=60
    )
    try:
        conn.wait_connected(20)
        conn.subscribe(subjects.heartbeats(M), on_hb)
        peers.wait_ready(60)
        assert peers.stats()["connected"] == 5
        wait_until(lambda: set(seen) == set(names), 20, lambda: f"heartbeats from {sorted(seen)}")
        first = {s: hb.seq for s, hb in seen.items()}
        wait_until(
            lambda: all(seen[s].seq >= first[s] + 2 for s in names), 20, "heartbeats went on"
        )
        default = Timings().heartbeat_interval  # the simulated sites beat as a real agent
        assert all(hb.interval == default and hb.mesh == M for hb in seen.values())

        replies = conn.gather(
            subjects.snapshot_all(M), wire.encode(SnapshotRequest()), 10, lambda r: len(r) >= 5
        )
        snaps = [wire.decode(r) for r in replies]
        assert all(isinstance(s, Snapshot) for s in snaps)
        assert sorted(s.site for s in snaps) == names  # type: ignore[attr-defined]
        assert all([p.site for p in s.peers] == ["a"] for s in snaps)  # type: ignore[attr-defined]
        assert sum(n.startswith("sim-") for n in _connections(srv)) == 5
        pid = peers.pid
    finally:
        code = peers.stop()
        conn.close()
    assert code == 0, peers.log_tail()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # nothing of its process group is left
    wait_until(
        lambda: not any(n.startswith("sim-") for n in _connections(srv)),
        10,
        "the peers' connections are closed",
    )
    stats = peers.stats()
    assert stats["hb_sent"] >= 15 and stats["errors"] == 0, stats
    assert stats["hb_received"] > 0  # they hold the heartbeat subscription, as an agent
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("nats-server.log*"))
    assert "Violation" not in logs  # everything they did, their permissions allow


def _subscriptions(server: EmbeddedServer) -> dict[str, set[str]]:
    with urllib.request.urlopen(f"{server.http_url}/connz?subs=1", timeout=2) as r:
        conns = json.load(r).get("connections", [])
    return {c.get("name", ""): set(c.get("subscriptions_list", [])) for c in conns}


def test_peers_with_interest_hear_only_their_sites_and_write_summaries(
    tmp_path: Path, server: tuple[Path, EmbeddedServer]
) -> None:
    """As an edge with interest scoping: one heartbeat subject per site it hears (no
    wildcard), and a site summary on its own key, which its permissions allow."""
    mesh_dir, srv = server
    names = ["p0", "p1", "p2"]
    hears = {"p0": ["a", "p1"], "p1": ["a", "p0"], "p2": ["a"]}
    peers = peers_mod.PeersProcess.start(
        tmp_path / "peers", mesh_dir, M, [srv.client_url], names, hears=hears,
        listen="interest", timeout=60,
    )  # fmt: skip
    try:
        peers.wait_ready(60)

        def all_connected() -> dict[str, set[str]] | None:
            found = _subscriptions(srv)
            return found if all(f"sim-{n}" in found for n in names) else None

        subs = wait_until(all_connected, 10, "the peers' connections")
        for name in names:
            heard = {x for x in subs[f"sim-{name}"] if x.endswith(".hb")}
            assert heard == {subjects.heartbeat(M, s) for s in hears[name]}, (name, heard)
        wait_until(lambda: peers.stats().get("summaries", 0) >= 3, 20, "a summary each")
        # p0 hears p1's heartbeats (its interest), p2 hears none but the silent site a's.
        wait_until(lambda: peers.stats().get("hb_received", 0) >= 4, 20, "heartbeats heard")
    finally:
        code = peers.stop()
    assert code == 0, peers.log_tail()
    assert peers.stats()["errors"] == 0, peers.stats()
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("nats-server.log*"))
    assert "Violation" not in logs
