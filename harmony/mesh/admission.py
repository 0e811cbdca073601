"""What the bridge refuses before an actor sees it: the policy it asks, the per-sender rate
limit, and the counters by reason. Kept apart from `remote` so the rules read on one page."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from harmony.mesh import wire

log = logging.getLogger(__name__)


class Refused(Exception):
    """A frame the bridge does not hand to an actor: `code` is an ERR_* of `harmony.mesh.wire`
    (and the reason it is counted under), `reason` what an operator reads."""

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


class WirePolicy(Protocol):
    """Who may reach which actor with what: the actors layer's export list."""

    def sender_kind(self, sender: str) -> str | None:
        """The kind of a subject's `<from>` (e.g. "site", "operator"); None: unknown."""
        ...

    def exported(self, kind: str, path: str) -> bool:
        """Does anything at `path` accept messages from this kind of sender?"""
        ...

    def admit(self, sender: str, kind: str, path: str, message: wire.Message) -> wire.Message:
        """The message as the actor may see it (clamped, its sender fields set from the
        subject); raises `Refused` when the type or the content is not accepted."""
        ...


RATE_PER_SENDER = 2000.0
"""NATS messages per second one sender may send this bridge (tell frames count once). Honest
traffic from one sender is a few per second (moves forwarded, probes, notes, an operator's
commands) and its bursts are a drain over many workloads; 2000/s is far above that and far
below what the loop thread can reject (a refused frame costs a few microseconds, a decoded one
tens, an actor's mailbox is unbounded): a flooding sender is cut down and the others are still
served. `HARMONY_WIRE_RATE=<rate>/<burst>` or `off` overrides it (benchmarks)."""
RATE_BURST = 4000.0
"""A sender that was quiet may send this many at once (two seconds' worth)."""
RATE_ENV = "HARMONY_WIRE_RATE"
MAX_BUCKETS = 4096
"""Without a policy any sender name gets a bucket: keep the table bounded."""


def rate_from_env(environ: dict[str, str] | None = None) -> tuple[float, float] | None:
    """(rate, burst) for a bridge from `HARMONY_WIRE_RATE`; None: no limit."""
    raw = (environ if environ is not None else dict(os.environ)).get(RATE_ENV, "").strip()
    if not raw:
        return RATE_PER_SENDER, RATE_BURST
    if raw == "off":
        return None
    try:
        rate, _, burst = raw.partition("/")
        pair = float(rate), float(burst or rate)
    except ValueError:
        raise ValueError(f"{RATE_ENV}={raw!r}: expected <rate>/<burst> or off") from None
    if not all(0 < x < float("inf") for x in pair):
        raise ValueError(f"{RATE_ENV}={raw!r}: rate and burst must be positive")
    return pair


class SenderBuckets:
    """A token bucket per sender. Used from the loop thread only."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, list[float]] = {}

    def allow(self, sender: str) -> bool:
        now = self.clock()
        bucket = self._buckets.get(sender)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._buckets.clear()
            bucket = self._buckets[sender] = [self.burst, now]
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        return True


MAX_LOGGED = 1000
ASK_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5)
ASK_BUCKETS += (1.0, 2.5, 5.0)
"""Upper bounds (seconds) of the ask-latency histogram: a local ask is well under a
millisecond, a cross-site one a few; the tail goes to the ask timeout."""


@dataclass
class WireStats:
    """What the wire refused, by reason (an ERR_* code: `malformed`, `unknown-actor`,
    `not-exported`, `unknown-sender`, `too-large`, `rate-limited`, `invalid`, and the
    heartbeat reader's `subject-mismatch`); visible in the site's snapshot."""

    counts: dict[str, int] = field(default_factory=dict)
    traffic: dict[str, int] = field(default_factory=dict)
    """Frames that went through, by direction and kind (`tell-sent`, `tell-received`, ...)."""
    ask_buckets: list[int] = field(default_factory=lambda: [0] * len(ASK_BUCKETS))
    ask_sum: float = 0.0
    ask_count: int = 0
    _logged: set[tuple[str, str]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def passed(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.traffic[what] = self.traffic.get(what, 0) + n

    def asked(self, seconds: float) -> None:
        """One ask of another site answered (or failed) after `seconds`."""
        with self._lock:
            self.ask_sum += seconds
            self.ask_count += 1
            for i, bound in enumerate(ASK_BUCKETS):
                if seconds <= bound:
                    self.ask_buckets[i] += 1
                    break

    def ask_histogram(self) -> tuple[list[tuple[float, int]], float, int]:
        """(upper bound, cumulative count) pairs, the sum and the count."""
        with self._lock:
            total, out = 0, []
            for bound, n in zip(ASK_BUCKETS, self.ask_buckets, strict=True):
                total += n
                out.append((bound, total))
            return out, self.ask_sum, self.ask_count

    def flows(self) -> dict[str, int]:
        with self._lock:
            return dict(self.traffic)

    def reject(self, kind: str, subject: str, reason: str) -> None:
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            key = (kind, subject[:200])
            first = key not in self._logged and len(self._logged) < MAX_LOGGED
            if first:  # once per (reason, subject): a flood must not flood the log
                self._logged.add(key)
        if first:
            # Subjects and reasons carry what the sender wrote: never raw into a log.
            why = wire.shown(reason, 300)
            log.warning("rejected %s message on %s: %s", kind, wire.printable(key[1]), why)

    def rejected(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    @property
    def malformed(self) -> int:
        return self.counts.get(wire.ERR_MALFORMED, 0)

    @property
    def unknown_actor(self) -> int:
        return self.counts.get(wire.ERR_UNKNOWN_ACTOR, 0)
