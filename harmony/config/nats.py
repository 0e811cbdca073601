"""``[nats]``: how the agent reaches the mesh."""

from __future__ import annotations

from typing import Literal

from harmony.config.base import Base


class NatsConfig(Base):
    """How the agent reaches the mesh: its own embedded nats-server, or existing servers."""

    mode: Literal["embedded", "external"] = "embedded"
    host: str = "127.0.0.1"
    client_port: int = 4222
    cluster_port: int = 6222
    http_port: int = 8222
    """Monitoring port of the embedded server; readiness is checked on its /healthz."""
    routes: list[str] = []
    """Cluster routes to the other sites' servers, e.g. ``nats-route://127.0.0.1:6223``."""
    servers: list[str] = []
    """Client URLs. Embedded: extra URLs to fall back on. External: the servers to use."""
    cluster_advertise: str = ""
    """Advertised route address; set to an unreachable address to force traffic via routes."""
    jetstream_max_store: str = "1G"
    kv_replicas: int = 0
    """Replicas of the lease bucket; 0: min(3, servers in the mesh, or cores if named)."""
    role: Literal["core", "edge"] = "core"
    """An edge's server is a leaf node of the core (see `harmony.site_roles`)."""
    cores: list[str] = []
    """The mesh's core sites, the same list on every site; empty: every site is a core."""
    leafnode_port: int = 7422
    """A core's listener for the edges' leaf connections (only when `cores` is named)."""
    leaf_remotes: list[str] = []
    """An edge's: the leafnode URLs of several core servers (``nats-leaf://host:port``)."""
