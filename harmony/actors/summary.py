"""The site summary writer: what `harmony status` shows of this site at a thousand sites.

Every `summaries.SUMMARY_INTERVAL` the SiteActor builds a `SiteSummary` from the board (the
same lines a snapshot reads: the agent's state, each workload's phase and doubt, failed
actors) and the peer view (the peers this site watches), and publishes it on its key of the
sites bucket. Nothing waits: the bucket is created in the background (retried at the next
write until it exists), and the write is a plain publish.
"""

from __future__ import annotations

import logging
import re

from harmony.actors.base import AgentContext
from harmony.config import kv_replicas
from harmony.mesh import summaries
from harmony.mesh.summaries import MAX_PLACED, MAX_STATES, MAX_UNHEALTHY, SiteSummary, Unhealthy
from harmony.textsafe import printable

log = logging.getLogger(__name__)

_NOT_STATE = re.compile(r"[^a-z0-9_-]")
PEER_TROUBLE = ("suspect", "silent")
GEO_TROUBLE = ("down", "refused")
"""`geo.Admit` verdicts that leave a workload down everywhere this site knows of."""


def _state(s: str) -> str:
    """A state as a summary may carry it: lower-case, short, a letter first."""
    s = _NOT_STATE.sub("-", s.lower())[:32]
    return s if s[:1].isalpha() else "other"


def _count(counts: dict[str, int], state: str) -> None:
    state = _state(state)
    if state in counts or len(counts) < MAX_STATES:
        counts[state] = counts.get(state, 0) + 1


def build_summary(ctx: AgentContext, interval: float = summaries.SUMMARY_INTERVAL) -> SiteSummary:
    """This site's summary as of now, from the board and the peer view."""
    workloads: dict[str, int] = {}
    peers: dict[str, int] = {}
    trouble: list[Unhealthy] = []
    placed: list[str] = []
    agent_state = "running"
    for info in ctx.board.lines():
        parts = info.path.split("/")
        if info.path == "agent":
            agent_state = info.state
        if len(parts) == 3 and parts[1] == "workload" and info.kind == "horizontal":
            # It steers slots, each counted as a workload of its own; it runs nothing itself.
            if info.detail.get("why"):
                why = _text(info.detail["why"], f"REPLICAS {info.detail.get('replicas', '')}: ")
                trouble.append(Unhealthy(what=f"workload {parts[2]}", why=why))
        elif len(parts) == 3 and parts[1] == "workload":
            _count(workloads, info.detail.get("phase") or info.state)
            placed.append(parts[2])
            doubt = info.detail.get("doubt", "")
            if doubt:
                trouble.append(
                    Unhealthy(what=f"workload {parts[2]}", why=_text(doubt, "FENCE UNCONFIRMED: "))
                )
            geo = info.detail.get("geo", "")
            if geo in GEO_TROUBLE:
                why = _text(info.detail.get("geo_reason", ""), f"GEO {geo.upper()}: ")
                trouble.append(Unhealthy(what=f"workload {parts[2]}", why=why))
        if info.state == "failed":
            trouble.append(Unhealthy(what=_text(info.path), why="failed"))
    for p in ctx.peer_view.read(ctx.clock.monotonic()):
        _count(peers, p.state)
        if p.state in PEER_TROUBLE:
            trouble.append(Unhealthy(what=_text(f"peer {p.site}"), why=p.state))
    return SiteSummary(
        site=ctx.site,
        incarnation=ctx.incarnation,
        state=_state(agent_state),
        wall=round(ctx.clock.wall(), 3),
        interval=interval,
        witness=ctx.config.witness,
        workloads=workloads,
        placed=sorted(placed)[:MAX_PLACED],
        peers=peers,
        unhealthy=trouble[:MAX_UNHEALTHY],
        unhealthy_total=len(trouble),
        labels=ctx.config.labels,
        site_capacity=ctx.config.capacity,
    )


def _text(s: str, prefix: str = "") -> str:
    return printable(prefix + s, 200)


class SummaryWriter:
    """Writes one site's summary; used on the SiteActor's thread, never blocks it."""

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx
        self.written = 0
        bridge = ctx.bridge
        self._out = (
            None
            if bridge is None
            else summaries.writer(bridge.conn, ctx.mesh, ctx.site, kv_replicas(ctx.config))
        )

    def write(self) -> None:
        if self._out is None:
            return
        self._out.publish(build_summary(self.ctx))
        self.written += 1
