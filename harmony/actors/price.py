"""PriceActor: this site's price, published in the mesh's prices bucket (`harmony.mesh.prices`).

A fixed ``[price] value`` is published from the start; a ``hook`` is run every `interval`
(``/bin/sh -c``, its own process group, killed after `hook_timeout`, by the hooks driver's
`run_shell`) and must print one number. A hook that fails, times out or prints anything else
changes nothing: the last good price stays published, and the journal says why (once per
new reason, so a broken hook polled every second does not flood it). The actor also carries
the cost moves this site made (`RecordMove`, from `harmony.actors.cost`) in the same value,
because a site writes only its own key and one writer per key cannot lose the other's write.

The hook blocks this actor's thread while it runs; nothing else waits on this actor.
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import tempfile
from dataclasses import dataclass

from harmony.actors.base import HarmonyActor, handles
from harmony.actors.drivers.base import inherited_env
from harmony.actors.drivers.hooks_run import run_shell
from harmony.config import CostTopologyConfig, SiteConfig, kv_replicas
from harmony.mesh import prices
from harmony.mesh.prices import CostMove, SitePrice
from harmony.textsafe import printable

log = logging.getLogger(__name__)

PRICE_PATH = "agent/price"
PUBLISH_INTERVAL = 2.0
"""Seconds between two writes of an unchanged price (a lost write is replaced soon)."""
HOOK_TIMEOUT = 10.0
"""A price hook running longer than this (or than its interval) is killed."""
MAX_PRICE = 1e12


@dataclass(frozen=True)
class RunPriceHook:
    """Local timer message: run the price hook now."""


@dataclass(frozen=True)
class PublishPrice:
    """Local timer message: write this site's price again."""


@dataclass(frozen=True)
class RecordMove:
    """Local: a cost actor of this site moved (or placed) `workload` on `target`."""

    workload: str
    target: str
    cost: bool


def parse_price(output: str) -> float | str:
    """The price a hook printed, or why its output is not one."""
    text = output.strip()
    if not text:
        return "printed nothing"
    try:
        value = float(text)
    except ValueError:
        return f"printed {printable(text, 60)!r}, not a number"
    if not math.isfinite(value) or not 0 <= value <= MAX_PRICE:
        return f"printed {text!r}: a price is a number from 0 to {MAX_PRICE:g}"
    return value


def needs_price(cfg: SiteConfig) -> bool:
    """A site with a price publishes it; a site that runs a cost workload records its moves
    in the same value, priced or not."""
    placed = (w for w in cfg.workloads if cfg.site in w.topology.sites)
    return cfg.price is not None or any(isinstance(w.topology, CostTopologyConfig) for w in placed)


def hook_timeout(interval: float) -> float:
    return min(HOOK_TIMEOUT, interval)


class PriceActor(HarmonyActor):
    kind = "price"

    def started(self) -> None:
        cfg = self.ctx.config.price
        self.price: float | None = cfg.value if cfg is not None else None
        self.moves: dict[str, CostMove] = {}
        self.failure = ""
        bridge = self.ctx.bridge
        self.out = (
            None
            if bridge is None
            else prices.writer(
                bridge.conn, self.ctx.mesh, self.ctx.site, kv_replicas(self.ctx.config)
            )
        )
        if cfg is not None and cfg.hook:
            self.every(cfg.interval, RunPriceHook())
        self.every(PUBLISH_INTERVAL, PublishPrice())
        self.show()

    def show(self) -> None:
        cfg = self.ctx.config.price
        source = "none" if cfg is None else ("hook" if cfg.hook else "value")
        price = "" if self.price is None else f"{self.price:g}"
        self.set_state("running", price=price, source=source, hook_error=self.failure)

    @handles(RunPriceHook)
    def on_run_hook(self, _: RunPriceHook) -> None:
        cfg = self.ctx.config.price
        assert cfg is not None and cfg.hook
        got = self.run_hook(cfg.hook, hook_timeout(cfg.interval))
        if isinstance(got, str):
            if got != self.failure:
                kept = "none yet" if self.price is None else f"{self.price:g}"
                self.ctx.record("", "price-hook-failed", f"{got}; the price stays {kept}")
            self.failure = got
        else:
            if self.failure:
                self.ctx.record("", "price-hook-ok", f"price {got:g} again")
            self.failure = ""
            if got != self.price:
                self.ctx.record("", "price", f"{got:g} (was {self.price})")
            self.price = got
            self.publish()
        self.show()

    def run_hook(self, hook: str, timeout: float) -> float | str:
        """What the hook says, or why it said nothing usable."""
        with tempfile.TemporaryFile() as out:
            res = run_shell(
                shlex.quote(hook),
                env=inherited_env(os.environ),
                out_fd=out.fileno(),
                timeout=timeout,
                grace=1.0,
            )
            if not res.ok:
                return f"price hook {hook} {res.describe(timeout)}"
            out.seek(0)
            got = parse_price(out.read(4096).decode("utf-8", errors="replace"))
        return got if not isinstance(got, str) else f"price hook {hook} {got}"

    @handles(RecordMove)
    def on_record_move(self, msg: RecordMove) -> None:
        self.moves[msg.workload] = CostMove(msg.target, round(self.ctx.clock.wall(), 3), msg.cost)
        self.publish()

    @handles(PublishPrice)
    def on_publish(self, _: PublishPrice) -> None:
        self.publish()

    def publish(self) -> None:
        if self.out is None:
            return
        self.out.publish(
            SitePrice(self.ctx.site, self.price, round(self.ctx.clock.wall(), 3), self.moves)
        )
