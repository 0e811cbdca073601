"""The leafnode port's configuration (pure, plus `nats-server -t`): who may open a leaf link,
what an edge may not publish, how an edge watches its link. Meshes without cores render as
before. The real servers are attacked in test_attack_leaf.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import msgspec
import pytest

from harmony.config import (
    FailoverTopologyConfig,
    ProcessDriverConfig,
    SiteConfig,
    Timings,
    WorkloadConfig,
)
from harmony.mesh.conf_text import render_conf
from harmony.mesh.server_conf import (
    ServerSecurity,
    ServerSpec,
    nats_server_binary,
    takes_leases,
)
from harmony.security.identity import site_identity
from harmony.security.material import init_mesh
from harmony.security.permissions import (
    LEAFNODE,
    STANDARD,
    js_inbox,
    mesh_js_inboxes,
    mesh_users,
    site_inbox,
    with_connection_types,
)
from harmony.security.roster import load_roster
from harmony.sim.scenario import SIM_TIMINGS
from harmony.strategies.timing import LEAF_PING_MAX, RELAXED_LEAF_PING, leaf_ping

M = "m"
CORES = ("a", "b", "c")


def _covers(pattern: str, subject: str) -> bool:
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


def test_an_edge_may_answer_asks_but_never_publish_to_a_jetstream_inbox(tmp_path: Path) -> None:
    md = init_mesh(tmp_path / "mesh", M, {s: () for s in (*CORES, "e1")}, ["admin"], ["watch"])
    users = {u.name: u for u in mesh_users(load_roster(md.roster_file), {}, cores=CORES)}
    edge = users["e1"]
    ask_reply = f"{site_inbox(M, 'a')}.0123456789abcdef.7x0a1b2c3d4e5f6a7b"
    js_reply = f"{js_inbox(site_inbox(M, 'a'))}.NUID.TOKEN"
    op_js = f"{js_inbox(f'_INBOX.{M}._op.admin')}.NUID"
    assert any(_covers(p, ask_reply) for p in edge.publish)
    for subject in (js_reply, op_js):
        assert any(_covers(p, subject) for p in edge.publish_deny), subject
    assert not any(_covers(p, ask_reply) for p in edge.publish_deny)
    assert tuple(mesh_js_inboxes(M)) == edge.publish_deny
    for name in (*CORES, "admin", "watch"):
        assert users[name].publish_deny == (), name
    # No cores named: nobody has a deny list.
    plain = mesh_users(load_roster(md.roster_file), {})
    assert all(u.publish_deny == () for u in plain)


def test_only_an_edge_site_user_may_open_a_leaf_link(tmp_path: Path) -> None:
    md = init_mesh(tmp_path / "mesh", M, {s: () for s in (*CORES, "e1")}, ["admin"], ["watch"])
    users = mesh_users(load_roster(md.roster_file), {}, cores=CORES)
    types = {u.name: u.connection_types for u in with_connection_types(users, CORES)}
    assert types["e1"] == (STANDARD, LEAFNODE)
    for name in (*CORES, "admin", "watch"):
        assert types[name] == (STANDARD,), name


def _specs(tmp_path: Path, cores: tuple[str, ...]) -> dict[str, ServerSpec]:
    sites = (*CORES, "e1")
    md = init_mesh(tmp_path / "mesh", M, {s: () for s in sites}, ["admin"], ["watch"])
    specs = {}
    for i, site in enumerate(sites):
        edge = bool(cores) and site not in cores
        sec = ServerSecurity(site_identity(md.path, site), md.roster_file, {}, cores)
        base = 20000 + 10 * i
        specs[site] = ServerSpec(
            name=site,
            client_port=base,
            cluster_port=base + 1,
            http_port=base + 2,
            cluster_name=M,
            store_dir=tmp_path / site,
            security=sec,
            leaf_port=base + 3 if cores and not edge else 0,
            leaf_remotes=["nats-leaf://127.0.0.1:20003"] if edge else [],
            leaf_ping=leaf_ping(SIM_TIMINGS),
        )
    return specs


def _valid(conf: str, where: Path) -> None:
    where.mkdir(parents=True, exist_ok=True)
    path = where / "check.conf"
    path.write_text(conf)
    done = subprocess.run(
        [str(nats_server_binary()), "-t", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_core_and_edge_confs_say_so_and_nats_server_accepts_them(tmp_path: Path) -> None:
    specs = _specs(tmp_path, CORES)
    core, edge = render_conf(specs["a"]), render_conf(specs["e1"])
    assert core.count("allowed_connection_types") == 6  # 4 sites, an operator, a reader
    assert core.count('allowed_connection_types: ["STANDARD", "LEAFNODE"]') == 1
    assert "deny: [" in core and "ping_interval" not in core
    assert 'ping_interval: "250ms"' in edge and f"ping_max: {LEAF_PING_MAX}" in edge
    assert 'reconnect: "250ms"' in edge
    # No compression either side: s2_auto turned to s2_best on a busy host (the round trip
    # grew), and that cost the core servers CPU on every message of every edge.
    assert core.count("compression: off") == 1 and edge.count("compression: off") == 1
    for site in ("a", "e1"):
        _valid(render_conf(specs[site]), tmp_path / site)


def test_a_mesh_without_cores_renders_no_leaf_settings(tmp_path: Path) -> None:
    conf = render_conf(_specs(tmp_path, ())["a"])
    for word in ("allowed_connection_types", "deny", "ping_interval", "ping_max", "leafnodes"):
        assert word not in conf, word


@pytest.mark.parametrize(
    "timings",
    [SIM_TIMINGS, Timings(), Timings(lease_ttl=60.0, renew_interval=5.0, fence_margin=10.0)],
)
def test_leaf_ping_takes_at_most_half_the_fence_deadline(timings: Timings) -> None:
    ping = leaf_ping(timings)
    deadline = timings.lease_ttl - timings.fence_margin
    assert 0.1 <= ping.interval <= 2.0
    assert ping.detection + ping.reconnect <= deadline / 2 + 1e-6 or ping.interval == 2.0


def test_an_edge_that_takes_no_lease_pings_its_link_at_the_relaxed_pace(tmp_path: Path) -> None:
    """Fast pings only where a fence deadline depends on the link: an edge whose workloads
    are all split-brain-allowed, or take their leases elsewhere, pings every 2 s."""
    cfg = SiteConfig(mesh=M, site="e1", workloads=[])
    ledger = WorkloadConfig(
        name="ledger",
        strategy="absolute-consistency",
        driver=ProcessDriverConfig(command=["true"]),
        topology=FailoverTopologyConfig(primary="a", standbys=["e1"]),
    )
    web = msgspec.structs.replace(ledger, name="web", strategy="split-brain-allowed")
    elsewhere = msgspec.structs.replace(
        ledger, name="db", topology=FailoverTopologyConfig(primary="a", standbys=["b"])
    )
    assert not takes_leases(msgspec.structs.replace(cfg, workloads=[web, elsewhere]))
    assert takes_leases(msgspec.structs.replace(cfg, workloads=[web, ledger]))
    relaxed = leaf_ping(SIM_TIMINGS, leases=False)
    assert relaxed.interval == RELAXED_LEAF_PING > leaf_ping(SIM_TIMINGS).interval
    assert relaxed.reconnect <= 1.0  # a link that closes is redialled at once, as before
