"""``[timings]`` and ``[supervision]``: every duration a site runs by, and their checks."""

from __future__ import annotations

import math

import msgspec

from harmony.config.base import Base
from harmony.strategies.timing import (
    RECOMMENDED_CLOCK_SKEW,
    RECOMMENDED_FENCE_MARGIN,
    RECOMMENDED_HEARTBEAT_INTERVAL,
    RECOMMENDED_LEASE_TTL,
    RECOMMENDED_RENEW_INTERVAL,
    RECOMMENDED_SILENT_AFTER,
    RECOMMENDED_STOP_GRACE,
    site_timing_problems,
)

MAX_HEARTBEAT_INTERVAL = 60.0
"""The slowest heartbeat a peer accepts (`harmony.actors.messages.Interval`)."""


class Timings(Base):
    """All durations are seconds. The lease defaults are `harmony.strategies.timing`'s
    recommended values: the safety argument lives there, and so do its numbers."""

    heartbeat_interval: float = RECOMMENDED_HEARTBEAT_INTERVAL
    suspect_after: float = 1.5
    """A peer is *suspect* after this many heartbeat intervals without a heartbeat."""
    silent_after: float = RECOMMENDED_SILENT_AFTER
    """A peer is *silent* after this many intervals; must be <= 3 (detection bound)."""
    ask_timeout: float = 5.0
    lease_ttl: float = RECOMMENDED_LEASE_TTL
    renew_interval: float = RECOMMENDED_RENEW_INTERVAL
    fence_margin: float = RECOMMENDED_FENCE_MARGIN
    """The holder starts fencing at (last renewal sent) + lease_ttl - fence_margin."""
    stop_grace: float = RECOMMENDED_STOP_GRACE
    clock_skew: float = RECOMMENDED_CLOCK_SKEW
    """Bound on the wall-clock difference between the mesh's NATS servers: the server expires
    a lease by its own clock, so a skewed leader may expire it this much early (0 = one machine
    or tight time sync). Enters the safety inequality; every site of a mesh uses the same."""


class Supervision(Base):
    """OTP-style restart intensity: more than `max_restarts` within `within` s escalates."""

    max_restarts: int = 5
    within: float = 30.0


def timing_problem(t: Timings, lease: bool) -> tuple[str, str] | None:
    """(field, reason) of the first problem of these timings, or None; `lease`: some
    workload runs under a lease, so the safety inequality must hold too. The one check of
    timings that site configs and simulation scenarios share."""
    for timing in msgspec.structs.fields(Timings):
        value = getattr(t, timing.name)
        field = f"timings.{timing.name}"
        if not math.isfinite(value):
            return field, f"{value} is not a number of seconds"
        if timing.name == "clock_skew":
            if value < 0:
                return field, "must be >= 0"
        elif value <= 0:
            return field, "must be > 0"
    if t.heartbeat_interval > MAX_HEARTBEAT_INTERVAL:
        return "timings.heartbeat_interval", (
            f"must be <= {MAX_HEARTBEAT_INTERVAL:g} s (peers refuse a slower heartbeat: it "
            "would hide a dead site for that long)"
        )
    if not t.suspect_after < t.silent_after:
        return "timings.silent_after", "must be greater than timings.suspect_after"
    if t.silent_after > 3:
        return "timings.silent_after", "must be <= 3 heartbeat intervals (detection bound)"
    if lease:
        problems = site_timing_problems(t)
        if problems:
            return "timings", "unsafe for absolute-consistency: " + "; ".join(problems)
    return None
