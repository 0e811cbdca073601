"""Site summaries (`harmony.mesh.summaries`): bounded values, what an agent says of itself,
the summary view, who may write which key on a secure server, and `harmony status` above
ten sites against a real nats-server's KV."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
from rich.console import Console
from support.actors import make_kit
from support.commands import harmony
from support.nats_servers import Node
from support.waiting import run_async

from harmony.actors.messages import ActorInfo, PeerInfo
from harmony.actors.summary import build_summary
from harmony.client import sites_of_workload
from harmony.mesh import summaries
from harmony.mesh.server import EmbeddedServer
from harmony.mesh.server_conf import ServerSecurity
from harmony.mesh.summaries import SiteSummary, Summary, Unhealthy
from harmony.render import summary_view
from harmony.security.identity import load_identity, site_identity
from harmony.security.material import init_mesh


def summary(site: str, **fields: Any) -> SiteSummary:
    base: dict[str, Any] = {"incarnation": "abc", "state": "running", "wall": 1.0}
    return SiteSummary(site=site, **(base | fields))


# -- values ----------------------------------------------------------------------------------


def test_a_value_is_a_summary_of_its_own_key_and_bounded() -> None:
    good = summary("a", workloads={"running": 2})
    assert summaries.decode(summaries.encode(good), "a") == good
    assert summaries.decode(summaries.encode(good), "b") is None  # another site's key
    assert summaries.decode(b"\xc1garbage", "a") is None
    assert summaries.decode(b"x" * (summaries.MAX_VALUE_BYTES + 1)) is None
    many = [Unhealthy(what=f"peer p{i}", why="silent") for i in range(summaries.MAX_UNHEALTHY + 1)]
    raw = msgspec.msgpack.encode(
        {**msgspec.to_builtins(good), "unhealthy": msgspec.to_builtins(many)}
    )
    assert summaries.decode(raw, "a") is None
    raw = msgspec.msgpack.encode({**msgspec.to_builtins(good), "state": "\x1b]0;owned\x07"})
    assert summaries.decode(raw, "a") is None
    raw = msgspec.msgpack.encode({**msgspec.to_builtins(good), "extra": 1})
    assert summaries.decode(raw, "a") is None


def test_an_agent_summarises_its_board_and_peers() -> None:
    kit = make_kit()
    try:
        ctx = kit.ctx
        board = ctx.board
        board.put(ActorInfo(path="agent", kind="agent", state="running"))
        for name, phase, doubt in (("web", "running", ""), ("db", "unknown", "probe failed")):
            detail = {"phase": phase, "doubt": doubt}
            board.put(
                ActorInfo(path=f"agent/workload/{name}", kind="w", state="running", detail=detail)
            )
        board.put(ActorInfo(path="agent/workload/web/run", kind="workload", state="failed"))
        ctx.peer_view.publish(
            {
                "b": PeerInfo(site="b", state="alive", last_heartbeat_age=0.1),
                "c": PeerInfo(site="c", state="silent", last_heartbeat_age=9.0),
            },
            kit.clock.now,
        )
        s = build_summary(ctx)
    finally:
        kit.ctx.scheduler.stop()
    assert (s.site, s.state, s.placed) == ("a", "running", ["db", "web"])
    assert s.workloads == {"running": 1, "unknown": 1}
    assert s.peers == {"alive": 1, "silent": 1}
    assert set(s.unhealthy) == {
        Unhealthy(what="workload db", why="FENCE UNCONFIRMED: probe failed"),
        Unhealthy(what="agent/workload/web/run", why="failed"),
        Unhealthy(what="peer c", why="silent"),
    }
    assert s.unhealthy_total == 3
    assert summaries.decode(summaries.encode(s), "a") == s


def test_a_horizontal_workload_counts_by_its_slots_and_says_why_fewer_run() -> None:
    """The steering actor at agent/workload/w runs nothing: its slots are the workloads
    counted; when fewer replicas run than asked, that is trouble, with its reason."""
    kit = make_kit()
    try:
        board = kit.ctx.board
        board.put(ActorInfo(path="agent", kind="agent", state="running"))
        for slot, phase in (("web--0", "running"), ("web--1", "stopped")):
            board.put(
                ActorInfo(
                    path=f"agent/workload/{slot}",
                    kind="workload-supervisor",
                    state="running",
                    detail={"phase": phase},
                )
            )
        why = "slot 1 stays down: no eligible site with room"
        detail = {"phase": "degraded", "replicas": "1/2", "why": why}
        board.put(
            ActorInfo(path="agent/workload/web", kind="horizontal", state="running", detail=detail)
        )
        s = build_summary(kit.ctx)
    finally:
        kit.ctx.scheduler.stop()
    assert s.workloads == {"running": 1, "stopped": 1}
    assert s.placed == ["web--0", "web--1"]
    assert s.unhealthy == [Unhealthy(what="workload web", why=f"REPLICAS 1/2: {why}")]


def test_status_of_a_horizontal_workload_asks_the_sites_that_run_its_slots() -> None:
    """The summary lists the slots, not the steering workload: `status --workload web` must
    still find its sites (it found none once the summary stopped listing `web`)."""
    found = {
        "a": Summary(summary("a", placed=["web--0", "web--1"]), 1.0),
        "b": Summary(summary("b", placed=["db", "web--1"]), 1.0),
        "c": Summary(summary("c", placed=["web", "webx--0", "web--x", "web--1-2"]), 1.0),
        "d": Summary(summary("d", placed=["web-api--0"]), 1.0),
    }
    assert sites_of_workload(found, "web") == ["a", "b", "c"]
    assert sites_of_workload(found, "db") == ["b"]
    assert sites_of_workload(found, "webx") == ["c"]
    assert sites_of_workload(found, "web-api") == ["d"]
    assert sites_of_workload(found, "we") == []


def test_the_summary_view_counts_sites_and_workloads_and_lists_trouble() -> None:
    found = {
        f"s{i:03}": Summary(summary(f"s{i:03}", workloads={"running": 2, "stopped": 1}), 1.0)
        for i in range(40)
    }
    found["s007"] = Summary(
        summary(
            "s007",
            workloads={"unknown": 1},
            unhealthy=[Unhealthy(what="workload db", why="FENCE UNCONFIRMED: probe failed")],
            unhealthy_total=3,
        ),
        1.0,
    )
    found["s009"] = Summary(summary("s009", workloads={"running": 2}), 600.0)  # stopped writing
    console = Console(record=True, width=120)
    console.print(summary_view("big", found))
    text = console.export_text()
    assert "mesh big  40 site(s)" in text
    assert re.search(r"sites: 39 running, 1 stale", text), text
    assert re.search(r"workloads: 76 running, 38 stopped, 1 unknown", text), text
    assert "unhealthy (4)" in text  # s009 stale, s007's one listed and two counted
    assert "FENCE UNCONFIRMED: probe failed" in text
    assert "no summary for 600 s (last: running)" in text
    assert "2 more" in text


# -- a secure server -------------------------------------------------------------------------

M = "sum"


@pytest.fixture
def secure(tmp_path: Path, make_nats_server: Callable[..., Node]) -> tuple[EmbeddedServer, Path]:
    md = init_mesh(tmp_path / "mesh", M, {"a": (), "b": ()}, ["admin"], ["watch"])
    security = ServerSecurity(site_identity(md.path, "a"), md.roster_file, {})
    node = make_nats_server("a", supervise=False, cluster_name=M, security=security)
    return node.server, md.path


@pytest.mark.mesh
def test_a_site_writes_its_own_summary_only_and_everyone_reads_them_all(
    secure: tuple[EmbeddedServer, Path],
) -> None:
    server, mesh_dir = secure
    identities = {
        "a": site_identity(mesh_dir, "a"),
        "b": site_identity(mesh_dir, "b"),
        "admin": load_identity(mesh_dir / "identities" / "admin"),
        "watch": load_identity(mesh_dir / "identities" / "watch"),
    }

    async def scenario() -> dict[str, Any]:
        errors: dict[str, list[str]] = {n: [] for n in identities}
        conns = {}
        for name, ident in identities.items():

            async def on_error(e: Exception, name: str = name) -> None:
                errors[name].append(str(e).lower())

            conns[name] = await nats.connect(
                server.client_url,
                error_cb=on_error,
                allow_reconnect=False,
                connect_timeout=3,
                **ident.connect_kwargs(),
            )
        a, b = conns["a"], conns["b"]
        await summaries.ensure_bucket(a, M, replicas=1)
        await a.publish(summaries.key_subject(M, "a"), summaries.encode(summary("a")))
        await a.publish(
            summaries.key_subject(M, "b"), summaries.encode(summary("b", state="failed"))
        )
        await b.publish(summaries.key_subject(M, "b"), summaries.encode(summary("b")))
        for c in conns.values():
            await c.flush()
        got = {}
        for name in ("admin", "watch", "b"):
            for _ in range(50):  # the publishes are not acknowledged: wait for the stream
                got[name] = await summaries.read_all(conns[name], M)
                if len(got[name]) == 2:
                    break
                await asyncio.sleep(0.1)
        for c in conns.values():
            await c.close()
        return {"errors": errors, "got": got}

    result = run_async(scenario())
    refused = [e for e in result["errors"]["a"] if "permissions violation" in e]
    assert refused and all(f"$kv.harmony-{M}-sites.b" in e for e in refused), refused
    for name in ("admin", "watch", "b"):
        found = result["got"][name]
        assert {s: v.value.state for s, v in found.items()} == {"a": "running", "b": "running"}
        assert not any(v.stale for v in found.values())
    for name in ("admin", "watch", "b"):
        assert not [e for e in result["errors"][name] if "permissions" in e], name


# -- harmony status above ten sites ---------------------------------------------------------


@pytest.mark.mesh
def test_a_read_gets_every_summary_when_the_server_outruns_the_client(
    make_nats_server: Callable[..., Node],
) -> None:
    """nats-py's "initial values done" marker can come before the values, when the server
    has pushed them all before the client took the first; a read that stopped there found
    nothing (`harmony status` at 1,000 sites, 1 run in 2). A deleted key's marker may be
    the stream's last message, and an empty bucket ends the read at once."""
    node = make_nats_server()
    n = 1000

    async def scenario() -> tuple[list[int], int, float]:
        nc = await nats.connect(node.client_url)
        await summaries.ensure_bucket(nc, "big", replicas=1)
        await summaries.ensure_bucket(nc, "empty", replicas=1)
        js = nc.jetstream()
        acks = [
            js.publish(
                summaries.key_subject("big", f"s{i:04}"), summaries.encode(summary(f"s{i:04}"))
            )
            for i in range(n)
        ]
        await asyncio.gather(*acks)
        kv = await js.key_value(summaries.bucket_name("big"))
        await kv.delete(f"s{n - 1:04}")  # the stream's last message: a delete marker
        await nc.close()
        counts = []
        for _ in range(10):  # each on a new connection, as `harmony status` reads
            nc = await nats.connect(node.client_url)
            counts.append(len(await summaries.read_all(nc, "big", timeout=5)))
            await nc.close()
        nc = await nats.connect(node.client_url)
        t0 = asyncio.get_running_loop().time()
        empty = len(await summaries.read_all(nc, "empty", timeout=5))
        took = asyncio.get_running_loop().time() - t0
        await nc.close()
        return counts, empty, took

    counts, empty, took = run_async(scenario(), timeout=120)
    assert counts == [n - 1] * 10
    assert empty == 0 and took < 2.5  # not the read's 5 s timeout


def test_status_of_a_large_mesh_prints_the_summary(make_nats_server: Callable[..., Node]) -> None:
    node = make_nats_server()

    async def write() -> None:
        nc = await nats.connect(node.client_url)
        await summaries.ensure_bucket(nc, "big", replicas=1)
        js = nc.jetstream()
        for i in range(12):
            s = summary(f"s{i:02}", workloads={"running": 1}, placed=["w"], interval=3600.0)
            await js.publish(summaries.key_subject("big", f"s{i:02}"), summaries.encode(s))
        await nc.close()

    run_async(write())
    env = {"COLUMNS": "200", "PATH": "/usr/bin:/bin"}
    out = harmony("status", "--server", node.client_url, "--mesh", "big", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "mesh big  12 site(s)" in out.stdout
    assert "sites: 12 running" in out.stdout and "workloads: 12 running" in out.stdout
    assert "nothing unhealthy" in out.stdout
    out = harmony("status", "--server", node.client_url, "--mesh", "big", "--json", env=env)
    rows = msgspec.json.decode(out.stdout)
    assert [r["site"] for r in rows] == [f"s{i:02}" for i in range(12)]
    # --workload asks the sites whose summary names it: none of these answers.
    out = harmony(
        "status",
        "--server",
        node.client_url,
        "--mesh",
        "big",
        "--workload",
        "w",
        "--timeout",
        "0.5",
        env=env,
    )
    assert out.returncode == 1
