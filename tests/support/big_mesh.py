"""A large mesh without agents: a secure nats-server whose roster names N sites, each of
which writes one synthetic `SiteSummary` with its own nkey (the permissions let a site
write its own key only), and stand-in sites that answer snapshot requests.

For the TUI's and `harmony status`'s views of a thousand sites: what they read is real (a
real server, real TLS and nkeys, the real bucket); only the agents are left out.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from harmony.actors.messages import ActorInfo, Snapshot
from harmony.mesh import subjects, summaries, wire
from harmony.mesh.ports import free_ports
from harmony.mesh.server import ServerSpec, ServerStartError
from harmony.mesh.server_conf import ServerSecurity
from harmony.mesh.summaries import SiteSummary, Unhealthy
from harmony.security.identity import Identity, load_identity, site_identity
from harmony.security.material import init_mesh, new_user_seed, public_key
from harmony.security.permissions import site_inbox
from harmony.security.roster import dump_roster, load_roster
from support.nats_servers import PORT_RACE_ATTEMPTS, NatsServers, Node, port_race

PHASES = ("running", "stopped", "stopped", "running", "unknown")


def site_name(i: int) -> str:
    return f"s{i:04}"


def synthetic(i: int) -> SiteSummary:
    """Site i: 20 workloads named w<i>-<k>; one site in a hundred (i % 100 == 7) has a silent
    peer and a workload whose fence is unconfirmed. Never stale within a test."""
    trouble = []
    if i % 100 == 7:
        trouble = [
            Unhealthy(what="peer s0001", why="silent"),
            Unhealthy(what="workload w3", why="FENCE UNCONFIRMED: probe failed"),
        ]
    return SiteSummary(
        site=site_name(i),
        incarnation=f"{i:012x}",
        state="running",
        wall=time.time(),
        interval=3600.0,
        workloads=dict(Counter({"running": 10, "stopped": 9}) + Counter({PHASES[i % 5]: 1})),
        placed=[f"w{i}-{k}" for k in range(20)],
        peers={"alive": 5},
        unhealthy=trouble,
        unhealthy_total=len(trouble),
    )


@dataclass
class BigMesh:
    """Site s0000 has a real site's material (the server's certificate); the others have
    only an nkey and connect with s0000's certificate (the server checks the certificate
    against the mesh CA, the user by the nkey)."""

    mesh: str
    dir: Path
    seeds: dict[str, Path] = field(default_factory=dict)

    @property
    def admin(self) -> Identity:
        return load_identity(self.dir / "identities" / "admin")

    def server_security(self) -> ServerSecurity:
        ident = site_identity(self.dir, site_name(0))
        return ServerSecurity(ident, self.dir / "roster.toml", {})

    def site_creds(self, site: str) -> dict[str, Any]:
        """nats.connect keyword arguments of a site."""
        return {
            "connect_timeout": 20,  # a TLS handshake on a loaded machine can take seconds
            "allow_reconnect": False,
            "tls": site_identity(self.dir, site_name(0)).ssl_context(),
            "nkeys_seed": str(self.seeds[site]),
            "inbox_prefix": site_inbox(self.mesh, site),
        }


def make_big_mesh(root: Path, mesh: str, n: int) -> BigMesh:
    md = init_mesh(root / "mesh", mesh, {site_name(0): ()}, ["admin"])
    big = BigMesh(mesh, md.path, {site_name(0): site_identity(md.path, site_name(0)).seed_file})
    roster = load_roster(md.roster_file)
    sites = dict(roster.sites)
    (root / "seeds").mkdir()
    for i in range(1, n):
        seed = new_user_seed()
        path = root / "seeds" / f"{site_name(i)}.seed"
        path.write_bytes(seed)
        path.chmod(0o600)
        big.seeds[site_name(i)] = path
        sites[site_name(i)] = public_key(seed)
    md.roster_file.write_text(dump_roster(msgspec.structs.replace(roster, sites=sites)))
    return big


CONNECT_ATTEMPTS = 5
START_TIMEOUT = 120.0
"""A roster of a thousand users makes a slow start on a loaded machine (20 s is not enough)."""


def start_server(servers: NatsServers, big: BigMesh) -> Node:
    """The mesh's one secure server (stopped by `servers.stop_all`)."""
    for attempt in range(PORT_RACE_ATTEMPTS):
        client, cluster, http = free_ports(3)
        spec = ServerSpec(
            name="core",
            client_port=client,
            cluster_port=cluster,
            http_port=http,
            cluster_name=big.mesh,
            store_dir=servers.store_dir("core"),
            security=big.server_security(),
        )
        node = servers.node(spec, supervise=False)
        try:
            node.server.start(timeout=START_TIMEOUT)
        except ServerStartError as e:
            if port_race(e) and attempt + 1 < PORT_RACE_ATTEMPTS:
                continue
            raise
        return node
    raise AssertionError("unreachable")


async def connect(url: str, big: BigMesh, site: str) -> Client:
    """Connect as `site`. On a loaded machine the server may drop a connection whose TLS
    handshake or authentication outlasted its timeout: such a connect is tried again."""
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            return await nats.connect(url, **big.site_creds(site))
        except (OSError, nats.errors.Error):
            if attempt + 1 == CONNECT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


async def write_summaries(url: str, big: BigMesh, n: int, parallel: int = 10) -> None:
    """Every site writes its own summary on its own connection, acknowledged by JetStream."""
    first = await connect(url, big, site_name(0))
    await summaries.ensure_bucket(first, big.mesh, replicas=1)
    await first.close()
    gate = asyncio.Semaphore(parallel)

    async def one(i: int) -> None:
        async with gate:
            nc = await connect(url, big, site_name(i))
            try:
                await nc.jetstream().publish(
                    summaries.key_subject(big.mesh, site_name(i)), summaries.encode(synthetic(i))
                )
            finally:
                await nc.close()

    await asyncio.gather(*(one(i) for i in range(n)))


@dataclass
class StandIn:
    """A site that answers snapshot requests (one agent actor) and records when it was
    asked, on its own subject and on the everyone-subject."""

    site: str
    nc: Client
    asked: list[float] = field(default_factory=list)
    asked_all: list[float] = field(default_factory=list)


async def stand_in(url: str, big: BigMesh, site: str) -> StandIn:
    """Connect as `site` (its own nkey) and answer its snapshot requests; close `nc` after."""
    nc = await connect(url, big, site)
    me = StandIn(site, nc)
    snap = Snapshot(
        mesh=big.mesh,
        site=site,
        witness=False,
        incarnation="standin",
        mono=0.0,
        wall=time.time(),
        actors=[ActorInfo(path="agent", kind="agent", state="running")],
        peers=[],
    )

    async def on_own(msg: Msg) -> None:
        me.asked.append(time.monotonic())
        await msg.respond(wire.encode(snap))

    async def on_all(msg: Msg) -> None:
        me.asked_all.append(time.monotonic())

    await nc.subscribe(subjects.snapshot(big.mesh, site), cb=on_own)
    await nc.subscribe(subjects.snapshot_all(big.mesh), cb=on_all)
    await nc.flush()
    return me
