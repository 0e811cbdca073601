"""Lease timing: the inequalities that make AbsoluteConsistency safe, checked in one place.

The argument (all durations in seconds; T = lease_ttl)
----------------------------------------------------
1. The holder takes ``t0`` = its local monotonic time when it *sent* its last successful CAS
   (acquire or renew). The server stored that write at some real time ``w >= t0``.
2. JetStream expires the key by comparing the stored message timestamp (the stream leader's
   *wall clock* at ``w``) with the current leader's wall clock, and never earlier than ``T``
   by that clock. Nobody can take the lease before it expires: a contender may only CAS
   against an observed deletion/expiry marker (or ``create`` on an absent key), never against
   a live holder's revision -- ``update(last=rev)`` does not check who wrote ``rev``.
   So the earliest takeover is at real time ``w + T - skew - drift*T >= t0 + T - skew - drift*T``.
3. The holder *begins* fencing at local ``t0 + T - fence_margin`` (a timer: `Decision.wake_at`,
   not "the next renewal failure"). The driver is down ``stop_grace`` later (SIGTERM, then
   SIGKILL), plus ``fence_slack`` (timer lateness, kill and reap, a GC pause); the holder's
   clock may run slow by ``drift``.
4. Safe iff the copy is down before the earliest takeover::

       (T - fence_margin) + stop_grace + fence_slack + 2*drift*T + skew  <  T

   i.e. ``fence_margin > stop_grace + fence_slack + 2*drift*T + skew``.
5. Renewals start every ``renew_interval`` from t0; at least ``min_renew_attempts`` of them must
   be *sent* before the fence deadline so one lost reply does not fence a healthy holder::

       min_renew_attempts * renew_interval  <  T - fence_margin

   Step 3 needs a *running* holder. A frozen agent (SIGSTOP, a stall) runs no timer, so a
   process workload runs under a tether (`harmony.actors.drivers.tether`) that the agent
   hands the same deadline, ``t0 + T - fence_margin``, after each confirmed CAS; the tether
   fences at it on its own, with the same ``stop_grace``. It only ever holds a deadline the
   holder computed, so the inequality below covers it unchanged.
6. A new holder's token is its acquisition revision, and KV revisions (stream sequences) only
   grow, so a resource that checks tokens rejects a late writer.

Leaf links (a core-and-edge mesh) are not in the inequality of step 4, on purpose. An
edge's agent renews over its server's leaf link to a core, and its ``t0`` is still the
*send* time of its last confirmed CAS (step 1) on its own monotonic clock (the lease actor
takes ``sent_at`` before it calls the store, edge or core alike): a link that is
slow, stalled or gone only means that no CAS is confirmed, so the holder (and its tether)
fences at ``t0 + T - fence_margin`` exactly as in step 3, and a late reply to a renewal
sent before the stall is dropped by the request's timeout (it could only have moved ``t0``
to its send time anyway, never later). So the leaf timings (`leaf_ping`) cannot make a
mesh unsafe; they decide only whether an edge whose link stalls *keeps* its lease:

    detection + reconnect + dial + one renewal  <  T - fence_margin

where detection <= (max_outstanding + 2) x interval (nats-server skips a ping after recent
traffic, then closes at the tick after ``ping_max`` unanswered ones). `leaf_ping` spends
half of the fence deadline on detection and reconnect, and leaves the other half (at least
``min_renew_attempts - 1`` renewals, by step 5) for the dial and a renewal. A link that
closes is noticed at once; one that stalls costs an availability gap, never safety.

Liveness (not safety): a crashed primary's last write may land just before the crash, so a
standby can take over ``max(T + expiry_lag, election_time)`` after it (the stream leader
dies with the primary: each lease's stream is led from its holder's server, see below), plus
the CAS round trip and the driver's start. Peers must be declared silent before that, or the
first standby defers to a dead primary.

Healthy holders (availability, not safety): renewals need the lease stream to have a leader,
and a JetStream election takes ``election_time`` (4-9 s, fixed in nats-server), more than
``T - fence_margin``. A holder whose stream lost its leader would fence although nothing
happened to its site. So each exclusive workload has a stream of its own, led from its
holder's server (`harmony.mesh.leases`, ``LeaseStore.lead``): another site's death leaves it
led. Where the leader sits is outside the argument above: steps 2-6 hold for any leader, since
every leader expires a key by the stored write's timestamp and accepts only CAS writes. The
price is in the liveness term: the holder's own crash now always costs an election, so a
takeover waits ``max(T + expiry_lag, election_time)`` every time, not only when the leader
happened to share the holder's site. An edge holder's stream is led from a core (an edge's
server holds no replica), so the death of that core can still cost it a fence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, Protocol

# The recommended (and default) timings: a site config's [timings] and `Params` start here.
RECOMMENDED_LEASE_TTL: Final = 8.0
RECOMMENDED_RENEW_INTERVAL: Final = 1.0
RECOMMENDED_FENCE_MARGIN: Final = 2.5
RECOMMENDED_STOP_GRACE: Final = 1.5
RECOMMENDED_HEARTBEAT_INTERVAL: Final = 0.3
"""A dead peer is reported silent within silent_after x 0.3 = 0.75 s, plus a check tick of
0.06 s: under 1 s at p99 (0.5 gave 1.1-1.4 s, and a split-brain-allowed replacement waits
for exactly this). Its cost is traffic, bounded by the interest (an agent hears its
topologies' sites and the cores), and a suspicion after 0.45 s of silence (measured in
BENCHMARKS.md "failover" and "scale": false suspicions under load)."""
RECOMMENDED_SILENT_AFTER: Final = 2.5
"""In heartbeat intervals, as in the site config."""
RECOMMENDED_CLOCK_SKEW: Final = 0.0

# The allowances the inequalities assume; `FenceBudget` shows the same numbers.
FENCE_SLACK: Final = 0.5
CLOCK_DRIFT: Final = 1e-3
MIN_RENEW_ATTEMPTS: Final = 3


class SiteTimings(Protocol):
    """The timing attributes of a site config's `Timings` (or anything alike)."""

    lease_ttl: float
    renew_interval: float
    fence_margin: float
    stop_grace: float
    heartbeat_interval: float
    silent_after: float
    clock_skew: float


def check_timings(
    lease_ttl: float,
    renew_interval: float,
    fence_margin: float,
    stop_grace: float,
    heartbeat_interval: float,
    *,
    silent_after: float = RECOMMENDED_SILENT_AFTER,
    fence_slack: float = FENCE_SLACK,
    clock_drift: float = CLOCK_DRIFT,
    clock_skew: float = RECOMMENDED_CLOCK_SKEW,
    min_renew_attempts: int = MIN_RENEW_ATTEMPTS,
    request_timeout: float | None = None,
    failover_target: float | None = None,
    election_time: float = 9.0,
    expiry_lag: float = 0.25,
) -> list[str]:
    """Every violated inequality as one human sentence; an empty list means the timings are safe.

    `silent_after` is in heartbeat intervals (as in the site config). `clock_drift` is a rate
    (1e-3 = 1000 ppm, far above real crystals); `clock_skew` bounds the wall-clock difference
    between NATS servers (0 on one machine). `failover_target`, when given, is checked against
    the worst-case takeover after a primary-site crash (see the module docstring).
    """
    problems: list[str] = []
    durations = {
        "lease_ttl": lease_ttl,
        "renew_interval": renew_interval,
        "fence_margin": fence_margin,
        "stop_grace": stop_grace,
        "heartbeat_interval": heartbeat_interval,
    }
    for name, value in durations.items():
        if not (value > 0 and math.isfinite(value)):
            problems.append(f"{name} ({value} s) must be a positive number of seconds")
    for name, value in (
        ("fence_slack", fence_slack),
        ("clock_drift", clock_drift),
        ("clock_skew", clock_skew),
    ):
        if not (value >= 0 and math.isfinite(value)):
            problems.append(f"{name} ({value}) must be >= 0")
    if problems:
        return problems

    deadline = lease_ttl - fence_margin
    if deadline <= 0:
        problems.append(
            f"fence_margin ({fence_margin:g} s) must be < lease_ttl ({lease_ttl:g} s): "
            "the fence deadline lease_ttl - fence_margin must be after the renewal"
        )
        return problems

    clock = 2 * clock_drift * lease_ttl + clock_skew
    down_by = deadline + stop_grace + fence_slack + clock
    if not down_by < lease_ttl:
        extra = f" + fence_slack ({fence_slack:g} s)" if fence_slack else ""
        if clock:
            extra += f" + clock allowance (2 x drift x lease_ttl + skew = {clock:.3g} s)"
        problems.append(
            f"fence deadline (lease_ttl - fence_margin = {deadline:g} s) + stop_grace "
            f"({stop_grace:g} s){extra} must be < lease_ttl ({lease_ttl:g} s): the old holder "
            f"could still run when the lease expires; use fence_margin > "
            f"{stop_grace + fence_slack + clock:.3g} s"
        )

    if not min_renew_attempts * renew_interval < deadline:
        sent = max(0, math.ceil(deadline / renew_interval) - 1)
        problems.append(
            f"renew_interval ({renew_interval:g} s) allows only {sent} renew attempt(s) before "
            f"the fence deadline (lease_ttl - fence_margin = {deadline:g} s); need "
            f"{min_renew_attempts}: {min_renew_attempts} x renew_interval must be < {deadline:g} s"
        )

    if request_timeout is not None and not 0 < request_timeout < renew_interval:
        problems.append(
            f"request_timeout ({request_timeout:g} s) must be > 0 and < renew_interval "
            f"({renew_interval:g} s): one lease request at a time, each answered before the next"
        )

    detect = silent_after * heartbeat_interval
    if not detect < lease_ttl:
        problems.append(
            f"peer silence detection (silent_after {silent_after:g} x heartbeat_interval "
            f"{heartbeat_interval:g} s = {detect:g} s) must be < lease_ttl ({lease_ttl:g} s), "
            "or the first standby still defers to a dead primary when the lease expires"
        )

    if failover_target is not None:
        takeover = worst_case_takeover(
            lease_ttl, expiry_lag=expiry_lag, election_time=election_time
        )
        if not takeover < failover_target:
            problems.append(
                f"worst-case takeover max(lease_ttl + expiry_lag = {lease_ttl + expiry_lag:g} s, "
                f"election_time = {election_time:g} s) = {takeover:g} s must be < "
                f"failover_target ({failover_target:g} s), leaving time for the driver to start"
            )
    return problems


def site_timing_problems(t: SiteTimings) -> list[str]:
    """`check_timings` of a site config's timings, with the default allowances."""
    return check_timings(
        t.lease_ttl,
        t.renew_interval,
        t.fence_margin,
        t.stop_grace,
        t.heartbeat_interval,
        silent_after=t.silent_after,
        clock_skew=t.clock_skew,
    )


@dataclass(frozen=True)
class FenceBudget:
    """The safety inequality of `check_timings` in numbers, for people to read:
    ``fence_margin > stop_grace + fence_slack + clock`` (clock = 2 x drift x lease_ttl + skew)."""

    fence_margin: float
    stop_grace: float
    fence_slack: float
    clock: float
    renew_attempts: int
    """Renewals sent before the fence deadline (check_timings wants `min_renew_attempts`)."""
    min_renew_attempts: int

    @property
    def margin(self) -> float:
        return self.fence_margin - self.stop_grace - self.fence_slack - self.clock

    def __str__(self) -> str:
        op = ">" if self.margin > 0 else "<="
        return (
            f"fence_margin {self.fence_margin:g} s {op} stop_grace {self.stop_grace:g} "
            f"+ fence_slack {self.fence_slack:g} + clock allowance {self.clock:.3g} s "
            f"(margin {self.margin:.2f} s)"
        )


def fence_budget(t: SiteTimings) -> FenceBudget:
    """The numbers `site_timing_problems` judges, with the same allowances."""
    deadline = t.lease_ttl - t.fence_margin
    return FenceBudget(
        fence_margin=t.fence_margin,
        stop_grace=t.stop_grace,
        fence_slack=FENCE_SLACK,
        clock=2 * CLOCK_DRIFT * t.lease_ttl + t.clock_skew,
        renew_attempts=max(0, math.ceil(deadline / t.renew_interval) - 1),
        min_renew_attempts=MIN_RENEW_ATTEMPTS,
    )


LEAF_PING_MAX: Final = 2
"""Unanswered pings after which an edge's server drops its leaf link (nats-server's
``ping_max``)."""


@dataclass(frozen=True)
class LeafPing:
    """How an edge's server watches its leaf link (nats-server's ``ping_interval``,
    ``ping_max`` and the leafnodes ``reconnect`` delay), in seconds."""

    interval: float = 2.0
    max_outstanding: int = LEAF_PING_MAX
    reconnect: float = 1.0

    @property
    def detection(self) -> float:
        """The longest a stalled link stays up (see the module docstring)."""
        return (self.max_outstanding + 2) * self.interval


RELAXED_LEAF_PING: Final = 2.0
"""Seconds between an edge's pings when none of its workloads takes a lease."""


def leaf_ping(t: SiteTimings, leases: bool = True) -> LeafPing:
    """An edge's leaf-link timings from its lease timings: detection and reconnect take at
    most half of the fence deadline ``lease_ttl - fence_margin`` (module docstring, "Leaf
    links"); never pings more often than every 0.1 s, nor less often than every 2 s.

    An edge none of whose workloads takes a lease (`leases` False: split-brain-allowed
    only) has no fence deadline to keep, and pings every `RELAXED_LEAF_PING` s: on a busy
    host the fast pings go unanswered for a moment, the link is dropped as stale, and each
    redial costs both ends a TLS handshake and a resend of every subscription. At 60 sites
    on 2 cores this kept every edge redialling every few seconds, swelled the core servers,
    and made every heartbeat through them late (BENCHMARKS.md, scale). A link that closes
    is redialled at once either way."""
    if not leases:
        return LeafPing(interval=RELAXED_LEAF_PING, reconnect=1.0)
    deadline = max(t.lease_ttl - t.fence_margin, 0.0)
    interval = min(2.0, max(0.1, deadline / (2 * (LEAF_PING_MAX + 3))))
    return LeafPing(interval=round(interval, 3), reconnect=round(interval, 3))


def worst_case_takeover(
    lease_ttl: float, *, expiry_lag: float = 0.25, election_time: float = 0.0
) -> float:
    """Seconds from a holder's crash until a standby's CAS can succeed (driver start excluded).

    The crashed holder's last renewal may have been written just before the crash; when the
    stream leader died too, nothing commits until a new leader is elected.
    """
    return max(lease_ttl + expiry_lag, election_time)


class UnsafeTimings(ValueError):
    """Raised by `require_safe_timings`; `problems` holds every violated inequality."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("unsafe lease timings:\n  - " + "\n  - ".join(problems))


def require_safe_timings(
    lease_ttl: float,
    renew_interval: float,
    fence_margin: float,
    stop_grace: float,
    heartbeat_interval: float,
    **options: Any,
) -> None:
    """`check_timings`, raising `UnsafeTimings` when anything is violated."""
    problems = check_timings(
        lease_ttl, renew_interval, fence_margin, stop_grace, heartbeat_interval, **options
    )
    if problems:
        raise UnsafeTimings(problems)
