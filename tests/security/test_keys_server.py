"""A secure mesh's servers, attacked with real clients: who gets in, and what they may do.

Two routed nats-servers (sites a and b) rendered from a mesh directory made by
`init_mesh`, exactly as an agent runs them; nats-py clients with and without credentials.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
from support.waiting import run_async, wait_until

from harmony.mesh.ports import free_ports
from harmony.mesh.server import EmbeddedServer, ServerSpec
from harmony.mesh.server_conf import ServerSecurity
from harmony.mesh.subjects import lease_bucket
from harmony.security import ca
from harmony.security.identity import Identity, load_identity, site_identity
from harmony.security.material import MeshDir, init_mesh

pytestmark = pytest.mark.mesh

M = "sec"
BUCKET = lease_bucket(M, "ledger")
WEB = lease_bucket(M, "web")


@dataclass
class SecureMesh:
    dir: MeshDir
    servers: dict[str, EmbeddedServer]

    def url(self, site: str) -> str:
        return self.servers[site].client_url

    def ident(self, name: str) -> Identity:
        if name in self.servers:
            return site_identity(self.dir.path, name)
        return load_identity(self.dir.identity_dir(name))


def _routes_up(server: EmbeddedServer) -> bool:
    with urllib.request.urlopen(f"{server.http_url}/routez", timeout=2) as r:
        return bool(json.load(r).get("num_routes"))


def start_secure(root: Path, host: str = "127.0.0.1") -> tuple[MeshDir, dict[str, EmbeddedServer]]:
    md = init_mesh(root / "mesh", M, {"a": (), "b": ()}, ["admin"], ["watch"])
    ports = free_ports(6)
    leases = {"a": ("ledger",), "b": ("ledger", "web")}
    specs = {}
    for i, site in enumerate(("a", "b")):
        sec = ServerSecurity(site_identity(md.path, site), md.roster_file, leases)
        other = ports[3 * (1 - i) + 1]
        specs[site] = ServerSpec(
            name=site,
            host=host,
            client_port=ports[3 * i],
            cluster_port=ports[3 * i + 1],
            http_port=ports[3 * i + 2],
            cluster_name=M,
            routes=[f"nats-route://127.0.0.1:{other}"],
            store_dir=root / site,
            security=sec,
        )
    servers = {s: EmbeddedServer(spec, supervise=False) for s, spec in specs.items()}
    return md, servers


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[SecureMesh]:
    md, servers = start_secure(tmp_path)
    try:
        for server in servers.values():
            server.start(timeout=30)
        for server in servers.values():
            wait_until(lambda s=server: _routes_up(s), 20, message="routes never came up")
        yield SecureMesh(md, servers)
    finally:
        for server in servers.values():
            server.stop(grace=3)


class Client:
    """A nats-py connection that records the errors the server sent it."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc: Any = None

    async def connect(self, url: str, **kw: Any) -> Client:
        async def on_error(e: Exception) -> None:
            self.errors.append(str(e).lower())

        self.nc = await nats.connect(
            url,
            error_cb=on_error,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=3,
            **kw,
        )
        return self

    async def refused(self, what: str, subject: str) -> bool:
        """Whether the server reported a permissions violation for `subject`."""
        await self.nc.flush(timeout=3)
        for _ in range(100):
            if any("permissions violation" in e and subject.lower() in e for e in self.errors):
                return True
            await asyncio.sleep(0.02)
        return False


async def _as(mesh: SecureMesh, who: str, site: str = "a") -> Client:
    return await Client().connect(mesh.url(site), **mesh.ident(who).connect_kwargs())


async def _refused_connect(url: str, **kw: Any) -> str:
    try:
        nc = await nats.connect(
            url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3, **kw
        )
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    await nc.close()
    return ""


def _tls(identity: Identity, cert: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(identity.ca_file))
    if cert:
        ctx.load_cert_chain(str(identity.cert_file), str(identity.key_file))
    return ctx


def test_no_one_connects_without_a_mesh_certificate_and_an_nkey(
    secure: SecureMesh, tmp_path: Path
) -> None:
    url = secure.url("a")
    site = secure.ident("a")

    async def attempts() -> dict[str, str]:
        foreign = ca.new_ca(M, "someone else's CA")
        pem = ca.issue(foreign, M, "a", server=True)
        (tmp_path / "f.pem").write_bytes(pem.cert)
        (tmp_path / "f.key").write_bytes(pem.key)
        forged = _tls(site, cert=False)
        forged.load_cert_chain(str(tmp_path / "f.pem"), str(tmp_path / "f.key"))
        return {
            "plaintext, anonymous": await _refused_connect(url),
            "TLS without a client certificate": await _refused_connect(
                url, tls=_tls(site, cert=False), nkeys_seed=str(site.seed_file)
            ),
            "a certificate of another CA": await _refused_connect(
                url, tls=forged, nkeys_seed=str(site.seed_file)
            ),
            "a mesh certificate, no nkey": await _refused_connect(url, tls=_tls(site)),
        }

    results = run_async(attempts())
    for how, error in results.items():
        assert error, f"{how}: connected"
    assert "authorization" in results["a mesh certificate, no nkey"].lower()

    async def rightful() -> None:
        c = await _as(secure, "a")
        await c.nc.close()

    run_async(rightful())


def test_a_site_cannot_speak_for_another_nor_touch_others_leases_or_streams(
    secure: SecureMesh,
) -> None:
    async def attack() -> dict[str, bool]:
        a = await _as(secure, "a")
        b = await _as(secure, "b", site="b")
        got: list[str] = []

        async def on_msg(msg: Any) -> None:
            got.append(msg.subject)

        await b.nc.subscribe(f"harmony.{M}.b.ask.>", cb=on_msg)
        await b.nc.flush()
        refused = {}
        for subject in (
            f"harmony.{M}.b.ask.b.agent.site",  # claims to be b
            f"harmony.{M}.b.ask._op.agent.site",  # claims to be an operator
            f"harmony.{M}.b.hb",
            f"$KV.{WEB}.web",  # outside a's topology
            f"$JS.API.STREAM.LEADER.STEPDOWN.KV_{WEB}",  # nor its stream's leader
            f"$JS.API.STREAM.DELETE.KV_{BUCKET}",
            f"$JS.API.STREAM.PURGE.KV_{BUCKET}",
            f"_INBOX.{M}.b.x.1",
        ):
            await a.nc.publish(subject, b"x")
            refused[f"publish {subject}"] = await a.refused("publish", subject)
        await a.nc.subscribe(">")
        refused["subscribe >"] = await a.refused("subscription", ">")
        # What a may do still works: b hears a's own ask.
        await a.nc.publish(f"harmony.{M}.b.ask.a.agent.site", b"ok")
        await a.nc.flush()
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.02)
        refused["only a's own ask arrived"] = got == [f"harmony.{M}.b.ask.a.agent.site"]
        await a.nc.close()
        await b.nc.close()
        return refused

    results = run_async(attack())
    assert all(results.values()), {k: v for k, v in results.items() if not v}


def test_a_reader_cannot_ask_or_tell_and_an_operator_can(secure: SecureMesh) -> None:
    async def roles() -> dict[str, bool]:
        b = await _as(secure, "b", site="b")
        got: list[str] = []

        async def on_msg(msg: Any) -> None:
            got.append(msg.subject)

        await b.nc.subscribe(f"harmony.{M}.b.tell.>", cb=on_msg)
        await b.nc.subscribe(f"harmony.{M}.b.ask.>", cb=on_msg)
        await b.nc.flush()
        reader = await _as(secure, "watch")
        operator = await _as(secure, "admin")
        out = {}
        for verb in ("ask", "tell"):
            subject = f"harmony.{M}.b.{verb}._op.agent.site"
            await reader.nc.publish(subject, b"x")
            out[f"reader {verb} refused"] = await reader.refused("publish", subject)
            await operator.nc.publish(subject, b"x")
            await operator.nc.flush()
            out[f"operator {verb} allowed"] = not await operator.refused("publish", subject)
        for _ in range(100):
            if len(got) >= 2:
                break
            await asyncio.sleep(0.02)
        out["b got exactly the operator's two"] = sorted(got) == [
            f"harmony.{M}.b.ask._op.agent.site",
            f"harmony.{M}.b.tell._op.agent.site",
        ]
        for c in (b, reader, operator):
            await c.nc.close()
        return out

    results = run_async(roles())
    assert all(results.values()), results


def test_only_site_certificates_can_open_a_route(secure: SecureMesh) -> None:
    """nats-server authorises a route by its certificate alone: an operator's certificate
    (identities CA) must not pass, a site's (mesh CA) must."""
    port = secure.servers["a"].spec.cluster_port

    def handshake(identity: Identity) -> str:
        ctx = _tls(identity)
        ctx.check_hostname = False
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            try:  # the route port speaks TLS first, then INFO
                with ctx.wrap_socket(raw) as tls:
                    return tls.recv(4096).decode(errors="replace") or "closed"
            except (ssl.SSLError, OSError) as e:
                return f"refused: {e}"

    assert handshake(secure.ident("admin")).startswith("refused"), "operator cert routed"
    assert not handshake(secure.ident("b")).startswith("refused"), "site cert refused"


def test_monitoring_listens_on_loopback_only_whatever_the_host(tmp_path: Path) -> None:
    _, servers = start_secure(tmp_path, host="0.0.0.0")
    server = servers["a"]
    try:
        server.start(timeout=30)
        with urllib.request.urlopen(f"{server.http_url}/varz", timeout=5) as r:
            varz = json.load(r)
        assert varz["http_host"] == "127.0.0.1"
        assert varz["host"] == "0.0.0.0"
        outside = _non_loopback_address()
        if outside is not None:
            with pytest.raises(OSError):
                socket.create_connection((outside, server.spec.http_port), timeout=2).close()
            socket.create_connection((outside, server.spec.client_port), timeout=2).close()
    finally:
        server.stop(grace=3)


def _non_loopback_address() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") else str(addr)


def test_a_refused_credential_is_named_in_the_connection_error(
    secure: SecureMesh, tmp_path: Path
) -> None:
    from harmony.mesh.connection import MeshConnection, MeshUnavailable
    from harmony.security.material import new_user_seed

    unknown = tmp_path / "unknown"
    shutil.copytree(secure.ident("admin").dir, unknown)
    (unknown / "nkey.seed").write_bytes(new_user_seed())
    conn = MeshConnection([secure.url("a")], "stranger", identity=load_identity(unknown)).start()
    try:
        with pytest.raises(MeshUnavailable, match=r"(?i)authorization violation"):
            conn.wait_connected(3)
    finally:
        conn.close()
