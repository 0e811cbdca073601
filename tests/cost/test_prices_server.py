"""The prices bucket on a secure nats-server: a site writes its own key and no other, every
site reads every price, and an operator or reader cannot read the bucket at all (prices
reach them in the cost actors' snapshots)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from support.nats_servers import Node
from support.waiting import run_async

from harmony.mesh import prices
from harmony.mesh.prices import CostMove, SitePrice
from harmony.mesh.server_conf import ServerSecurity
from harmony.security.identity import load_identity, site_identity
from harmony.security.material import init_mesh

pytestmark = pytest.mark.mesh

M = "pri"


def test_a_site_writes_its_own_price_only_and_every_site_reads_them_all(
    tmp_path: Path, make_nats_server: Callable[..., Node]
) -> None:
    md = init_mesh(tmp_path / "mesh", M, {"a": (), "b": ()}, ["admin"], ["watch"])
    security = ServerSecurity(site_identity(md.path, "a"), md.roster_file, {})
    server = make_nats_server("a", supervise=False, cluster_name=M, security=security).server
    identities = {
        "a": site_identity(md.path, "a"),
        "b": site_identity(md.path, "b"),
        "admin": load_identity(md.path / "identities" / "admin"),
        "watch": load_identity(md.path / "identities" / "watch"),
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
        await prices.ensure_bucket(a, M, replicas=1)
        moved = SitePrice("a", 3.0, 1.0, {"ledger": CostMove("b", 1.0)})
        await a.publish(prices.key_subject(M, "a"), prices.encode(moved))
        await a.publish(prices.key_subject(M, "b"), prices.encode(SitePrice("b", 0.0, 1.0)))
        await b.publish(prices.key_subject(M, "b"), prices.encode(SitePrice("b", 2.0, 1.0)))
        for c in conns.values():
            await c.flush()
        got = {}
        for name in ("a", "b"):
            for _ in range(50):  # the publishes are not acknowledged: wait for the stream
                got[name] = await prices.read_all(conns[name], M)
                if len(got[name].found) == 2:
                    break
                await asyncio.sleep(0.1)
        refused = {}
        for name in ("admin", "watch"):
            try:
                await prices.read_all(conns[name], M, timeout=2)
                refused[name] = False
            except Exception:
                refused[name] = True
        for c in conns.values():
            await c.close()
        return {"errors": errors, "got": got, "refused": refused}

    result = run_async(scenario())
    denied = [e for e in result["errors"]["a"] if "permissions violation" in e]
    assert denied and all(f"$kv.harmony-{M}-prices.b" in e for e in denied), denied
    for name in ("a", "b"):
        found = result["got"][name]
        assert {s: v.price for s, (v, _) in found.found.items()} == {"a": 3.0, "b": 2.0}
        last = found.last_move("ledger")
        assert last is not None and last.target == "b"
        assert not [e for e in result["errors"][name] if "permissions" in e and "$kv" not in e]
    assert result["refused"] == {"admin": True, "watch": True}
    for name in ("admin", "watch"):
        assert any("permissions violation" in e for e in result["errors"][name]), name
