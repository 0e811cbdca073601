"""The config files of a local mesh's sites: their NATS ports, routes and leaf links, and
the writing.

`LocalMesh` (embedded servers routed on loopback, optionally through the fault proxy) and
the containers backend (external servers in Docker) differ only in each site's NATS
settings; both write a site's file with `write_site_config`, so that the two read alike
and a change to the file format is made once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import msgspec
import tomli_w

from harmony.config import NatsConfig, SiteConfig, load_config
from harmony.mesh.ports import free_ports

Link = tuple[str, str]
"""(from site, to site): one direction of a route through the fault proxy."""


def write_site_config(path: Path, cfg: SiteConfig, header: str) -> SiteConfig:
    """Write `cfg` as TOML under a comment `header`; returns the file as the agent will
    load it (so a config the loader refuses fails here, before anything starts)."""
    data = msgspec.to_builtins(cfg)
    data.pop("source", None)
    path.write_text(f"# {header}\n" + tomli_w.dumps(_no_nulls(data)))
    return load_config(path)


def _no_nulls(data: dict[str, object]) -> dict[str, object]:
    """TOML has no null: a field left out is its default (``[price] value``, say)."""
    return {k: _no_nulls(v) if isinstance(v, dict) else v for k, v in data.items() if v is not None}


def loopback_ports(names: Sequence[str], proxied: bool) -> int:
    """How many ports `loopback_nats` takes for these sites."""
    return 3 * len(names) + (len(names) * (len(names) - 1) if proxied else 0)


def loopback_nats(
    names: Sequence[str], proxied: bool, ports: Sequence[int] = ()
) -> tuple[dict[str, NatsConfig], dict[Link, tuple[int, int]]]:
    """Each site's embedded-server settings on loopback, on free ports (`ports`, or new
    ones), and, when `proxied`, the proxy links every route goes through: (a, b) -> (the
    port a's route dials, b's cluster port)."""
    pairs = [(a, b) for a in names for b in names if a != b] if proxied else []
    ports = list(ports) or free_ports(loopback_ports(names, proxied))
    plan = {s: ports[3 * i : 3 * i + 3] for i, s in enumerate(names)}
    link_ports = dict(zip(pairs, ports[3 * len(names) :], strict=True))
    nats = {}
    for s in names:
        client, cluster, http = plan[s]
        if proxied:
            routes = [f"nats-route://127.0.0.1:{link_ports[(s, o)]}" for o in names if o != s]
        else:
            routes = [f"nats-route://127.0.0.1:{plan[o][1]}" for o in names if o != s]
        nats[s] = NatsConfig(
            client_port=client,
            cluster_port=cluster,
            http_port=http,
            routes=routes,
            servers=[f"nats://127.0.0.1:{plan[o][0]}" for o in names if o != s],
            # Gossip must never open a direct route around the proxy links.
            cluster_advertise="127.0.0.1:1" if proxied else "",
        )
    return nats, {(a, b): (port, plan[b][1]) for (a, b), port in link_ports.items()}


def core_edge_nats(
    cores: Sequence[str], edges: Sequence[str], proxied: bool
) -> tuple[dict[str, NatsConfig], dict[Link, tuple[int, int]]]:
    """A core-and-edge mesh on loopback: the `cores` routed to each other (as
    `loopback_nats` routes a whole mesh), each with a leafnode port; each edge a leaf node
    of every core. When `proxied`, an edge's leaf link to a core goes through the proxy too:
    (edge, core) -> (the port the edge dials, the core's leafnode port)."""
    leaf_links = [(e, c) for e in edges for c in cores] if proxied else []
    routed = loopback_ports(cores, proxied)
    ports = free_ports(routed + len(cores) + 3 * len(edges) + len(leaf_links))
    nats, links = loopback_nats(cores, proxied, ports[:routed])
    leaf_port = dict(zip(cores, ports[routed:], strict=False))
    rest = ports[routed + len(cores) :]
    for c in cores:
        nats[c] = msgspec.structs.replace(nats[c], cores=list(cores), leafnode_port=leaf_port[c])
    link_ports = dict(zip(leaf_links, rest[3 * len(edges) :], strict=True))
    for i, e in enumerate(edges):
        client, cluster, http = rest[3 * i : 3 * i + 3]
        dial = {c: link_ports[(e, c)] if proxied else leaf_port[c] for c in cores}
        nats[e] = NatsConfig(
            client_port=client,
            cluster_port=cluster,
            http_port=http,
            role="edge",
            cores=list(cores),
            # No fallback to a core's client port: an edge reaches the core only through
            # its leaf link (which a test may cut).
            leaf_remotes=[f"nats-leaf://127.0.0.1:{dial[c]}" for c in cores],
        )
    links.update({link: (port, leaf_port[link[1]]) for link, port in link_ports.items()})
    return nats, links
