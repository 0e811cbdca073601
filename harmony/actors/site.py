"""SiteActor: the site ("cluster") itself. Publishes heartbeats and its summary (the sites
bucket, `harmony.actors.summary`); answers pings and probes."""

from __future__ import annotations

import collections
import os
import time
from dataclasses import dataclass

import psutil

from harmony.actors.base import HarmonyActor, handles
from harmony.actors.messages import (
    Capacity,
    GetNotices,
    Heartbeat,
    Notice,
    Notices,
    Ping,
    Pong,
    ProbePeer,
    ProbeResult,
    SendNotice,
)
from harmony.actors.summary import SummaryWriter
from harmony.config import SiteConfig
from harmony.mesh import subjects, summaries, wire
from harmony.strategies.labels import constraints_digest, parse_constraints

SITE_PATH = "agent/site"


@dataclass(frozen=True)
class Beat:
    """Local timer message: time to publish a heartbeat."""


@dataclass(frozen=True)
class WriteSummary:
    """Local timer message: time to write this site's summary."""


def read_capacity() -> Capacity:
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        load1 = 0.0
    try:
        mem = psutil.virtual_memory().available // 2**20
    except OSError:
        mem = 0
    return Capacity(cpus=os.cpu_count() or 1, load1=round(load1, 2), mem_available_mb=mem)


def constraint_digests(cfg: SiteConfig) -> dict[str, str]:
    """Each workload placed on this site -> the digest of its constraints as this site reads
    them (announced in heartbeats: sites that read different ones refuse the workload)."""
    return {
        w.name: constraints_digest(parse_constraints(w.topology.constraints))
        for w in cfg.workloads
        if cfg.site in (w.topology.primary, *w.topology.standbys)
    }


class SiteActor(HarmonyActor):
    kind = "site"

    def started(self) -> None:
        self.seq = 0
        self.notices: collections.deque[Notice] = collections.deque(maxlen=20)
        self.notices_total = 0
        self.capacity = read_capacity()
        self.capacity_at = 0.0
        self.digests = constraint_digests(self.ctx.config)
        self.every(self.ctx.config.timings.heartbeat_interval, Beat())
        self.summary = SummaryWriter(self.ctx)
        self.every(summaries.SUMMARY_INTERVAL, WriteSummary(), first=1.0)
        self.set_state("running", witness=str(self.ctx.config.witness).lower())

    @handles(Beat)
    def on_beat(self, _: Beat) -> None:
        bridge = self.ctx.bridge
        if bridge is None:
            return
        now = self.ctx.clock.monotonic()
        if now - self.capacity_at > 5:
            self.capacity, self.capacity_at = read_capacity(), now
        self.seq += 1
        hb = Heartbeat(
            mesh=self.ctx.mesh,
            site=self.ctx.site,
            seq=self.seq,
            incarnation=self.ctx.incarnation,
            mono=now,
            wall=self.ctx.clock.wall(),
            interval=self.ctx.config.timings.heartbeat_interval,
            witness=self.ctx.config.witness,
            capacity=self.capacity,
            copies=self.ctx.copies.read(),
            labels=self.ctx.config.labels,
            site_capacity=self.ctx.config.capacity,
            constraints=self.digests,
        )
        bridge.conn.publish(subjects.heartbeat(self.ctx.mesh, self.ctx.site), wire.encode(hb))
        if self.seq % 10 == 1:
            self.set_detail(
                heartbeats=str(self.seq),
                load1=f"{self.capacity.load1:.2f}",
                mem_available_mb=str(self.capacity.mem_available_mb),
                cpus=str(self.capacity.cpus),
            )

    @handles(WriteSummary)
    def on_write_summary(self, _: WriteSummary) -> None:
        self.summary.write()

    @handles(Ping)
    def on_ping(self, msg: Ping) -> Pong:
        return Pong(text=msg.text, site=self.ctx.site)

    @handles(ProbePeer)
    def on_probe_peer(self, msg: ProbePeer) -> ProbeResult:
        """Agent-to-agent reachability: ask the target site's SiteActor over the mesh.

        Never this site itself: that ask would wait on this very thread, so the site would
        stall for the whole timeout (and its peers call it silent). The timeout is at most
        the site's ask_timeout, whatever the asker said: this actor waits that long."""
        if msg.target == self.ctx.site:
            return ProbeResult(
                source=self.ctx.site,
                target=msg.target,
                ok=False,
                error="a site does not probe itself",
            )
        timeout = min(msg.timeout, self.ctx.config.timings.ask_timeout)
        t0 = time.perf_counter()
        try:
            pong = self.ctx.ref(msg.target, SITE_PATH).ask(Ping(text="probe"), timeout=timeout)
        except Exception as e:
            return ProbeResult(source=self.ctx.site, target=msg.target, ok=False, error=str(e))
        ok = isinstance(pong, Pong) and pong.site == msg.target
        rtt = (time.perf_counter() - t0) * 1000
        return ProbeResult(source=self.ctx.site, target=msg.target, ok=ok, rtt_ms=round(rtt, 3))

    @handles(SendNotice)
    def on_send_notice(self, msg: SendNotice) -> None:
        self.ctx.ref(msg.target, SITE_PATH).tell(Notice(text=msg.text, sender=self.ctx.site))

    @handles(Notice)
    def on_notice(self, msg: Notice) -> None:
        self.notices.append(msg)
        self.notices_total += 1

    @handles(GetNotices)
    def on_get_notices(self, _: GetNotices) -> Notices:
        return Notices(items=list(self.notices), total=self.notices_total)
