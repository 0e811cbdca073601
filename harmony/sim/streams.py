"""Which nats-server leads (and which hold) the lease stream, from the monitoring endpoint;
and which core server an edge's leaf link uses right now.

Scenarios that crash "the NATS stream leader's server" must find it at the moment of the
fault: the leader moves with every election. Each server's ``/jsz?streams=true`` lists the
streams it holds a replica of, with the Raft group's current leader and the other replicas.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass

# Monitoring endpoints are on loopback (or the mesh network): never via an HTTP proxy.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class StreamPlacement:
    leader: str
    peers: frozenset[str]


def _monitor(http_url: str, path: str, timeout: float) -> dict[str, object] | None:
    try:
        with _opener.open(f"{http_url}/{path}", timeout=timeout) as r:
            data = json.load(r)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _jsz(http_url: str, timeout: float) -> dict[str, object] | None:
    return _monitor(http_url, "jsz?streams=true", timeout)


def leaf_core(http_url: str, timeout: float = 1.0) -> str:
    """The core server an edge's leaf link is connected to now (its ``/leafz``), "" when
    none is (an edge's one remote uses one core at a time and fails over)."""
    leafz = _monitor(http_url, "leafz", timeout)
    leafs = (leafz or {}).get("leafs") or []
    names = [str(x.get("name") or "") for x in leafs if isinstance(x, dict)]  # type: ignore[attr-defined]
    return next((n for n in names if n), "")


def stream_placement(
    servers: Iterable[tuple[str, str]], stream: str, timeout: float = 1.0
) -> StreamPlacement | None:
    """Ask each (server name, monitoring URL) in turn; the first that knows a leader wins.

    None when no answering server holds the stream or no leader is elected right now.
    """
    for name, url in servers:
        jsz = _jsz(url, timeout)
        if jsz is None:
            continue
        for account in jsz.get("account_details") or []:  # type: ignore[attr-defined]
            for detail in account.get("stream_detail") or []:
                if detail.get("name") != stream:
                    continue
                cluster = detail.get("cluster") or {}
                leader = str(cluster.get("leader") or "")
                peers = {name} | {str(r.get("name")) for r in cluster.get("replicas") or []}
                if leader:
                    return StreamPlacement(leader, frozenset(peers | {leader}))
    return None
