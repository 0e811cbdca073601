"""Prometheus metrics of one agent, read at scrape time from what the agent already keeps.

Nothing on a hot path changes for a scrape: the gauges come from the board (the lines a
snapshot shows), the counters from the journal's and the bridge's own counts, and the
embedded server's state from its supervisor. A scrape never asks an actor anything, so a busy
or stuck actor cannot stall it (and a scrape cannot stall the actor).

Names follow Prometheus conventions: ``harmony_`` prefix, base units (seconds), ``_total``
counters. Served on loopback by default; beyond loopback, over mutual TLS with the site's
certificate (a scraper presents one of the mesh's: ``harmony mesh add-identity``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client import start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from harmony.actors.messages import ActorInfo, Snapshot
from harmony.config import SiteConfig, is_loopback_host

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from harmony.actors.journal import Journal
    from harmony.mesh.connection import MeshConnection
    from harmony.mesh.remote import Bridge
    from harmony.mesh.server import EmbeddedServer
    from harmony.security.identity import Identity

log = logging.getLogger(__name__)

PEER_STATES = ("alive", "suspect", "silent", "unknown")
PHASES = ("stopped", "starting", "running", "stopping", "fencing", "unknown")
JS_PROBE_TIMEOUT = 1.0
"""How long a scrape waits for JetStream to answer `$JS.API.INFO` (an edge's goes to the core)."""


class MetricsSource(Protocol):
    """What the collector reads: the agent (`harmony.actors.runtime.Agent`)."""

    config: SiteConfig
    journal: Journal | None
    bridge: Bridge | None
    server: EmbeddedServer | None
    conn: MeshConnection | None

    def snapshot(self) -> Snapshot: ...


def _seconds(text: str) -> float | None:
    """The board's ``fence_in`` ("3.2s") in seconds."""
    try:
        return float(text.rstrip("s"))
    except ValueError:
        return None


class AgentCollector(Collector):
    def __init__(self, agent: MetricsSource) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        snap = self.agent.snapshot()
        site = snap.site
        yield from self._workloads(snap.actors, site)
        yield from self._peers(snap, site)
        yield from self._bridge(snap, site)
        yield from self._journal(site)
        yield from self._server(site)

    # -- workloads: one line per workload supervisor and its lease on the board -----------
    def _workloads(self, actors: list[ActorInfo], site: str) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "harmony_workload_info",
            "A workload of this site: its strategy and this site's role (value 1)",
            labels=["site", "workload", "strategy", "role"],
        )
        phase = GaugeMetricFamily(
            "harmony_workload_phase",
            "The phase of this site's copy (1 for the current phase)",
            labels=["site", "workload", "phase"],
        )
        running = GaugeMetricFamily(
            "harmony_workload_copies_running",
            "Copies of the workload running on this site (0 or 1)",
            labels=["site", "workload"],
        )
        held = GaugeMetricFamily(
            "harmony_workload_lease_held",
            "1 if this site holds the workload's lease (absolute-consistency)",
            labels=["site", "workload"],
        )
        holder = GaugeMetricFamily(
            "harmony_workload_lease_holder",
            "The lease holder this site last saw (value 1; absolute-consistency)",
            labels=["site", "workload", "holder"],
        )
        token = GaugeMetricFamily(
            "harmony_workload_fencing_token",
            "The fencing token of this site's active copy",
            labels=["site", "workload"],
        )
        fence_in = GaugeMetricFamily(
            "harmony_workload_fence_deadline_seconds",
            "Seconds until this site's copy is fenced unless the lease is renewed",
            labels=["site", "workload"],
        )
        for a in actors:
            if a.kind != "workload-supervisor":
                continue
            name = a.path.rsplit("/", 1)[-1]
            d = a.detail
            info.add_metric([site, name, d.get("strategy", ""), d.get("role", "")], 1)
            now = d.get("phase", "")
            for p in PHASES:
                phase.add_metric([site, name, p], 1 if p == now else 0)
            running.add_metric([site, name], 1 if now == "running" else 0)
            if d.get("strategy") != "absolute-consistency":
                continue
            seen = d.get("lease_seen", "")
            held.add_metric([site, name], 1 if seen == f"held@{site}" else 0)
            if "@" in seen:
                holder.add_metric([site, name, seen.split("@", 1)[1]], 1)
            if d.get("token"):
                token.add_metric([site, name], float(d["token"]))
            left = _seconds(d.get("fence_in", ""))
            if left is not None:
                fence_in.add_metric([site, name], left)
        yield from (info, phase, running, held, holder, token, fence_in)

    # -- peers ------------------------------------------------------------------------------
    def _peers(self, snap: Snapshot, site: str) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "harmony_peer_state",
            "Liveness of each peer this site listens to (1 for the current state)",
            labels=["site", "peer", "state"],
        )
        age = GaugeMetricFamily(
            "harmony_peer_heartbeat_age_seconds",
            "Seconds since this site last heard the peer's heartbeat",
            labels=["site", "peer"],
        )
        for p in snap.peers:
            for s in PEER_STATES:
                state.add_metric([site, p.site, s], 1 if p.state == s else 0)
            if p.last_heartbeat_age is not None:
                age.add_metric([site, p.site], p.last_heartbeat_age)
        yield from (state, age)

    # -- the bridge ---------------------------------------------------------------------------
    def _bridge(self, snap: Snapshot, site: str) -> Iterator[Metric]:
        rejected = CounterMetricFamily(
            "harmony_bridge_rejected_frames",
            "Frames the bridge refused, by reason (malformed, unknown-sender, not-exported, ...)",
            labels=["site", "reason"],
        )
        for reason, n in sorted(snap.rejected.items()):
            rejected.add_metric([site, reason], n)
        frames = CounterMetricFamily(
            "harmony_bridge_frames",
            "Actor messages through the bridge, by direction and kind",
            labels=["site", "direction", "kind"],
        )
        asks = HistogramMetricFamily(
            "harmony_bridge_ask_duration_seconds",
            "Time for an ask of another site's actor to be answered (or to fail)",
            labels=["site"],
        )
        bridge = self.agent.bridge
        if bridge is not None:
            for what, n in sorted(bridge.stats.flows().items()):
                kind, _, direction = what.partition("-")
                frames.add_metric([site, direction, kind], n)
            buckets, total, count = bridge.stats.ask_histogram()
            cumulative = [(repr(b), float(n)) for b, n in buckets] + [("+Inf", float(count))]
            asks.add_metric([site], cumulative, sum_value=total)
        yield from (rejected, frames, asks)

    # -- the journal --------------------------------------------------------------------------
    def _journal(self, site: str) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "harmony_journal_events",
            "Journal events recorded by this agent, by kind",
            labels=["site", "kind"],
        )
        starts = CounterMetricFamily(
            "harmony_workload_copy_starts",
            "Copies started (or promoted) on this site, by the strategy's reason",
            labels=["site", "workload", "reason"],
        )
        fences = CounterMetricFamily(
            "harmony_workload_fences",
            "Fences of this site's copy, by the strategy's reason",
            labels=["site", "workload", "reason"],
        )
        takeovers = CounterMetricFamily(
            "harmony_workload_lease_acquisitions",
            "Leases this site acquired (a start, or a failover to this site)",
            labels=["site", "workload"],
        )
        journal = self.agent.journal
        by_kind: dict[str, int] = {}
        counts = dict(journal.counts) if journal is not None else {}
        for (workload, kind, reason), n in sorted(counts.items()):
            by_kind[kind] = by_kind.get(kind, 0) + n
            if kind in ("start", "promote"):
                starts.add_metric([site, workload, reason], n)
            elif kind == "fence":
                fences.add_metric([site, workload, reason], n)
            elif kind == "lease-acquired":
                takeovers.add_metric([site, workload], n)
        for kind, n in sorted(by_kind.items()):
            events.add_metric([site, kind], n)
        yield from (events, starts, fences, takeovers)

    # -- the embedded nats-server and JetStream ------------------------------------------------
    def _server(self, site: str) -> Iterator[Metric]:
        server = self.agent.server
        up = GaugeMetricFamily(
            "harmony_nats_server_up",
            "1 if the embedded nats-server runs (external servers: not reported)",
            labels=["site"],
        )
        restarts = CounterMetricFamily(
            "harmony_nats_server_restarts",
            "Times the agent restarted its embedded nats-server",
            labels=["site"],
        )
        if server is not None:
            up.add_metric([site], 1 if server.running else 0)
            restarts.add_metric([site], server.restarts)
        js = GaugeMetricFamily(
            "harmony_jetstream_reachable",
            "1 if JetStream (the lease and summary buckets) answered this scrape",
            labels=["site"],
        )
        js.add_metric([site], 1 if self._jetstream_answers() else 0)
        yield from (up, restarts, js)

    def _jetstream_answers(self) -> bool:
        conn = self.agent.conn
        if conn is None:
            return False
        try:
            reply = conn.request("$JS.API.INFO", b"", JS_PROBE_TIMEOUT)
            return "error" not in json.loads(reply)
        except Exception:  # no responders, timeout, not JSON: not reachable
            return False


class MetricsServer:
    """The HTTP endpoint (a thread of prometheus_client's); `close` frees the port."""

    def __init__(self, httpd: WSGIServer, url: str) -> None:
        self.httpd = httpd
        self.url = url

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve_metrics(agent: MetricsSource, identity: Identity | None = None) -> MetricsServer | None:
    """Serve `agent`'s metrics where its config says; None if off or the port is taken (the
    agent runs on: its workloads matter more than its metrics, and the log says why)."""
    m = agent.config.metrics
    if not m.port:
        return None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(agent))
    tls: dict[str, str | bool] = {}
    if identity is not None and not is_loopback_host(m.host):
        tls = {
            "certfile": str(identity.cert_file),
            "keyfile": str(identity.key_file),
            "client_cafile": str(identity.clients_ca_file),
            "client_auth_required": True,
        }
    started = time.monotonic()
    try:
        httpd, _thread = start_http_server(m.port, m.host, registry, **tls)  # type: ignore[arg-type]
    except OSError as e:
        log.error("metrics not served on %s:%d: %s (set [metrics] port)", m.host, m.port, e)
        return None
    scheme = "https" if tls else "http"
    host = f"[{m.host}]" if ":" in m.host else m.host
    url = f"{scheme}://{host}:{m.port}/metrics"
    log.info("metrics on %s (%.0f ms)", url, 1000 * (time.monotonic() - started))
    return MetricsServer(httpd, url)
