"""Strategy parameters: the site's timings plus per-workload options, validated once."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from harmony.strategies.names import DEFAULT_RECONCILE, RECONCILE_POLICIES, ReconcilePolicy
from harmony.strategies.timing import (
    RECOMMENDED_FENCE_MARGIN,
    RECOMMENDED_HEARTBEAT_INTERVAL,
    RECOMMENDED_LEASE_TTL,
    RECOMMENDED_RENEW_INTERVAL,
    RECOMMENDED_STOP_GRACE,
    SiteTimings,
    check_timings,
)


@dataclass(frozen=True, slots=True)
class Params:
    """Seconds unless said otherwise. Defaults are the recommended safe values.

    rank_delay: how long the n-th live candidate waits after seeing the lease gone (n x this),
        so the primary, then the first live standby, go first.
    failed_cooldown: after our copy exits for good, do not take the lease / start for this long.
    sync_grace: SplitBrainAllowed: at boot, wait this long for a first `PeerCopiesSeen`.
    failback: AbsoluteConsistency: a standby holder hands the lease back to the primary once
        the primary has been alive for `failback_after` (default off: the holder keeps it).
    reconcile: SplitBrainAllowed policy: keep-original, keep-replacement or best-score.
    """

    lease_ttl: float = RECOMMENDED_LEASE_TTL
    renew_interval: float = RECOMMENDED_RENEW_INTERVAL
    fence_margin: float = RECOMMENDED_FENCE_MARGIN
    stop_grace: float = RECOMMENDED_STOP_GRACE
    heartbeat_interval: float = RECOMMENDED_HEARTBEAT_INTERVAL
    rank_delay: float = 1.0
    failed_cooldown: float = 10.0
    sync_grace: float = 2.0
    failback: bool = False
    failback_after: float = 30.0
    reconcile: ReconcilePolicy = DEFAULT_RECONCILE

    def __post_init__(self) -> None:
        if self.reconcile not in RECONCILE_POLICIES:
            valid = ", ".join(RECONCILE_POLICIES)
            raise ValueError(f"unknown reconcile policy {self.reconcile!r}; valid: {valid}")
        for name in ("rank_delay", "failed_cooldown", "sync_grace", "failback_after"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0")

    @property
    def fence_offset(self) -> float:
        """Seconds after t0 at which the holder must begin fencing."""
        return self.lease_ttl - self.fence_margin

    def timing_problems(self, **options: Any) -> list[str]:
        """`check_timings` on these values (options: fence_slack, clock_skew, ...)."""
        return check_timings(
            self.lease_ttl,
            self.renew_interval,
            self.fence_margin,
            self.stop_grace,
            self.heartbeat_interval,
            **options,
        )

    @classmethod
    def from_timings(cls, timings: SiteTimings, **options: Any) -> Params:
        """Build from a config `Timings` (or anything alike) plus workload options."""
        names = ("lease_ttl", "renew_interval", "fence_margin", "stop_grace", "heartbeat_interval")
        known = {f.name for f in fields(cls)}
        unknown = set(options) - known
        if unknown:
            raise ValueError(f"unknown strategy option(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {n: float(getattr(timings, n)) for n in names}
        values.update(options)
        return cls(**values)
