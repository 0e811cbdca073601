"""CostActor: a ``cost`` workload's price decision on this site (``agent/workload/<w>/cost``).

It decides nothing itself. Every `READ_INTERVAL` it reads every site's price from the mesh's
prices bucket (`harmony.mesh.prices`: the same numbers on every site), gathers what the geo
gate knows of the sites (labels, liveness from PeerWatch) and calls the pure
`harmony.strategies.cost.decide`. A decided move becomes the operator-move path: a
`MoveWorkload` to this site's workload supervisor, which tells every site of the topology to
prefer the target and feeds its strategy `MoveRequested` (absolute-consistency: stop,
release, the target acquires; split-brain-allowed: the target starts, then the old copy
stops: the rows of `cost.MOVE_STEPS`). Otherwise the workload runs as a failover workload
whose preference is its `sites` in the config's order.

**Only the site that runs the copy acts.** The hold timer and cooldown live in the runner's
decision state; other sites only show the prices. With absolute-consistency at most one site
runs it, so one site acts at a time. With split-brain-allowed two sides of a partition may
each run a copy and each decide: from the same bucket they pick the same target (a site
that cannot read the bucket decides nothing), and a second move to the site the workload
already prefers changes nothing, so duplicates are harmless.

**Who placed it here.** Every placement and move is recorded in the deciding site's own
price value (`RecordMove` to the PriceActor) before it is carried out. The site that then
runs the copy finds the latest record naming it and starts *placed* (with the cooldown of a
cost move); a runner no record names took it over by failover, and goes to the cheapest
site at once. So noise never moves it twice: each cost move needs `min_saving` held for
`hold` seconds, and at most one per `cooldown`. The config's first site runs it until every
price is in (`SETTLE`), then places it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from concurrent.futures import Future
from dataclasses import dataclass

import pykka

from harmony.actors import messages as m
from harmony.actors.base import OfWorkload, handles
from harmony.actors.geo_gate import GeoGate
from harmony.actors.price import PRICE_PATH, RecordMove
from harmony.config import CostTopologyConfig
from harmony.mesh import prices
from harmony.mesh.prices import Prices
from harmony.strategies.cost import CostAct, CostDecision, CostState, decide
from harmony.strategies.labels import SiteFacts
from harmony.textsafe import printable

log = logging.getLogger(__name__)

READ_INTERVAL = 1.0
"""Seconds between two reads of the prices bucket on the site running the copy."""
IDLE_READ_INTERVAL = 5.0
"""... and on the other sites, which only show the prices (fewer JetStream requests)."""
MOVE_TIMEOUT = 120.0
"""A move still not carried out after this long (the copy still runs here) is decided again."""
SETTLE = 10.0
"""After its start, the actor places the workload only once every site of the topology is
heard from and priced, or this many seconds have passed: a first decision on half the
prices would place it on the cheapest of those, and then need a cost move."""


@dataclass(frozen=True)
class ReadPrices:
    """Local timer message: read the prices bucket."""


@dataclass(frozen=True)
class PricesRead:
    """Local: what a read of the prices bucket found (None: the read failed, `error`)."""

    prices: Prices | None
    error: str = ""


class CostActor(OfWorkload):
    kind = "cost"

    def started(self) -> None:
        t = self.workload.topology
        assert isinstance(t, CostTopologyConfig)
        self.spec = t.spec()
        self.geo = GeoGate(self.ctx.config, self.workload)
        self.decided = CostState()
        self.pending: tuple[str, float] | None = None
        self.copy_of: float | None = None
        """The start (wall) of the copy `decided` and `pending` are about: a copy that left
        and came back between two reads is another copy, with another history."""
        self.reading: Future[Prices] | None = None
        self.last_said = ""
        self.started_at = self.ctx.clock.monotonic()
        self.read_at = -IDLE_READ_INTERVAL
        self.every(READ_INTERVAL, ReadPrices())
        self.set_state("running", decision="", why="waiting for the prices bucket")

    # -- the read ----------------------------------------------------------------------------
    @handles(ReadPrices)
    def on_read(self, _: ReadPrices) -> None:
        bridge = self.ctx.bridge
        if bridge is None or (self.reading is not None and not self.reading.done()):
            return
        now = self.ctx.clock.monotonic()
        idle = self.name not in self.ctx.copies.read()
        if idle and now < self.read_at + IDLE_READ_INTERVAL:
            return
        self.read_at = now
        conn, mesh, me = bridge.conn, self.ctx.mesh, self.actor_ref

        async def read() -> Prices:
            nc = conn.nc
            if nc is None or not nc.is_connected:
                raise ConnectionError("not connected")
            return await prices.read_all(nc, mesh)

        def done(fut: Future[Prices]) -> None:
            if fut.cancelled():
                return
            err = fut.exception()
            msg = (
                PricesRead(None, str(err) or type(err).__name__)
                if err
                else PricesRead(fut.result())
            )
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(msg)

        self.reading = asyncio.run_coroutine_threadsafe(read(), conn.loop)
        self.reading.add_done_callback(done)

    @handles(PricesRead)
    def on_prices(self, msg: PricesRead) -> None:
        if msg.prices is None:
            self.set_detail(why=printable(f"cannot read the prices: {msg.error}", 200))
            return  # decide only from what every site reads
        now = self.ctx.clock.monotonic()
        found = msg.prices
        facts, _ = self.geo.facts(self.ctx.peer_view.read(now))
        sites = [dataclasses.replace(f, price=found.price(s)) for s, f in facts.items()]
        shown = " ".join(f"{s}={p:g}" for s in self.geo.sites if (p := found.price(s)) is not None)
        copy = self.ctx.copies.read().get(self.name)
        if copy is None:
            self.decided, self.pending, self.copy_of = CostState(), None, None
            self.set_state("idle", prices=shown, decision="", why="the site running it decides")
            return
        if copy.started_wall != self.copy_of:
            # Moved away and back within one idle read (5 s): the move this site sent is done,
            # and this copy was placed by whatever the bucket says now. (Kept, the old move
            # stayed "under way" for MOVE_TIMEOUT and nothing was decided meanwhile.)
            self.decided, self.pending, self.copy_of = CostState(), None, copy.started_wall
        if self.pending is not None and now < self.pending[1] + MOVE_TIMEOUT:
            return  # a move is under way
        self.pending = None
        if self.decided.site is None:
            self.decided = self.arrived(found, now)
        if self.decided.site is None and not self.settled(sites, now):
            self.set_state("settling", prices=shown, why="waiting for every site's price")
            return
        d = decide(self.spec, self.decided, sites, now, self.workload.strategy)
        self.decided = d.state
        if d.act in (CostAct.PLACE, CostAct.FAILOVER) and d.target == self.ctx.site:
            # Placed here: say so in the bucket, so a later runner knows it was not.
            self.record_move(d.target, cost=False)
        elif d.act in (CostAct.PLACE, CostAct.FAILOVER, CostAct.MOVE):
            self.move(d, now)
        self.say(d)
        self.set_state("deciding", prices=shown, decision=str(d.act), why=printable(d.reason, 300))

    def arrived(self, found: Prices, now: float) -> CostState:
        """This site runs the copy now: placed here by a move (the latest one names this
        site), or taken over by failover (not placed: `decide` sends it to the cheapest)."""
        last = found.last_move(self.name)
        if last is None or last.target != self.ctx.site:
            return CostState()
        at = now - max(0.0, self.ctx.clock.wall() - last.wall) if last.cost else None
        return CostState(self.ctx.site, last_move_at=at)

    def settled(self, sites: list[SiteFacts], now: float) -> bool:
        known = {f.name for f in sites if f.price is not None}
        return known >= set(self.geo.sites) or now >= self.started_at + SETTLE

    def move(self, d: CostDecision, now: float) -> None:
        assert d.target is not None
        cost = d.act is CostAct.MOVE
        steps = "; ".join(f"{s.step} on {s.site}" for s in d.steps)
        self.ctx.record(self.name, "cost-move", f"{d.reason}" + (f" ({steps})" if steps else ""))
        self.record_move(d.target, cost)
        reason = printable(f"cost: {d.reason}", 500)
        assert self.parent is not None
        try:
            result = self.parent.ask(m.MoveWorkload(target=d.target, reason=reason), timeout=5)
        except (pykka.ActorDeadError, pykka.Timeout) as e:
            result = m.CommandResult(ok=False, detail=str(e))
        if isinstance(result, m.CommandResult) and not result.ok:
            self.ctx.record(self.name, "cost-move-refused", result.detail)
            self.decided = CostState(self.ctx.site, last_move_at=self.decided.last_move_at)
            return
        self.pending = (d.target, now)

    def record_move(self, target: str, cost: bool) -> None:
        """Into this site's price value (one writer per key: the PriceActor)."""
        price = self.ctx.directory.get(PRICE_PATH)
        if price is None:
            log.warning("%s: no price actor to record the move to %s", self.name, target)
            return
        with contextlib.suppress(pykka.ActorDeadError):
            price.tell(RecordMove(self.name, target, cost))

    def say(self, d: CostDecision) -> None:
        """Journal a decision when it says something new (not every read)."""
        said = (
            f"{d.act}: {d.reason}" if d.act is not CostAct.WAIT else f"{d.act} {d.state.candidate}"
        )
        if said != self.last_said:
            self.last_said = said
            self.ctx.record(self.name, "cost-decision", f"{d.act}: {d.reason}")
