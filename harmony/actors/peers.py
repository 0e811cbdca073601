"""PeerWatch: heartbeats in. Each peer site is alive, suspect or silent.

A peer is *suspect* after `suspect_after` of its heartbeat intervals without a heartbeat, and
*silent* after `silent_after` (<= 3, so a dead peer is reported within 3 intervals). Every
change goes to the parent (the agent supervisor), which tells the workloads. The deadlines
are kept on the connection's loop thread (`OverdueTimers`), moved by each heartbeat, so this
actor wakes when a peer is overdue, not to look (and once a `HOUSEKEEPING` period as a net).

Peers are the sites this site's configuration names (`exports.mesh_sites`); which heartbeats
count at all is `HeartbeatGate`'s to say (`harmony.actors.heartbeat_gate`).

Time this agent could not watch does not count against its peers. A check that runs more
than the slack after its deadline (or after the periodic one before it) means this process was
starved (a busy host, a GC pause, a stopped VM): the heartbeats that arrived meanwhile may
still sit unread in its socket, so every peer's silence is measured from the end of the
stall, as if its clock had stopped (`_discount_stall`). Without it an overloaded host turns
its own starvation into suspicions of every peer, each one more work (a split-brain-allowed
standby starts a copy), which starves it further. Only liveness waits longer: no decision
about an exclusive workload rests on a peer's silence (the lease decides).

Whose heartbeats it hears at all is its *interest* (`harmony.actors.interest`): every site
(one wildcard subscription) in an all-core mesh, as before; only the sites of its workloads'
topologies and the core in a core-and-edge mesh, one subscription per site, so its traffic
does not grow with the mesh. The interest is fixed for the agent's life: an operator's
move only reorders a topology's sites (a target outside it is refused), so no running
workload ever needs a site its configuration did not name.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field

from nats.aio.msg import Msg

from harmony.actors.base import HarmonyActor, handles
from harmony.actors.exports import mesh_sites
from harmony.actors.heartbeat_gate import HeartbeatGate
from harmony.actors.interest import core_sites, heartbeat_interest
from harmony.actors.messages import CopyInfo, Heartbeat, PeerInfo
from harmony.actors.overdue import OverdueTimers
from harmony.mesh import subjects
from harmony.mesh.connection import Subscription

log = logging.getLogger(__name__)

ALIVE, SUSPECT, SILENT, UNKNOWN = "alive", "suspect", "silent", "unknown"
TICKS_PER_INTERVAL = 5
"""Without a mesh connection (unit tests), peers are checked this often per interval."""
STALL_SLACK_TICKS = 2
"""How many fifths of an interval a check may run late before it counts as a stall."""
HOUSEKEEPING = 1.0
"""Seconds between periodic checks when overdue timers judge the peers (a safety net)."""
DEADLINE_EPSILON = 0.001
"""Past a threshold, not on it: a timer firing on the dot would find the peer just in time."""
MAX_STALLS = 32
"""Recent stalls remembered: enough for any silence still being judged."""


@dataclass(frozen=True)
class HeartbeatSeen:
    hb: Heartbeat
    received: float


@dataclass(frozen=True)
class CheckPeers:
    """Judge every peer now. `due`: the deadline an overdue timer fired for (how late this
    check runs says whether this agent was starved); None: the periodic check."""

    due: float | None = None


@dataclass(frozen=True)
class PeerChanged:
    """Local: `site` went from `old` to `new`. `restarted`: it came back as a new agent."""

    site: str
    old: str
    new: str
    age: float | None
    restarted: bool = False


@dataclass(frozen=True)
class PeerCopies:
    """Local: the copies `site` announced in its latest heartbeat (when they changed)."""

    site: str
    copies: dict[str, CopyInfo]


@dataclass(frozen=True)
class ResendCopies:
    """Local: an actor that (re)started and missed the copies already announced asks for
    them; each peer's next heartbeat sends `PeerCopies` again, changed or not."""


@dataclass(frozen=True)
class PeerFacts:
    """Local: what `site` says of itself (labels, capacity, the digests of its workloads'
    constraints), sent once per incarnation of it; the peer view holds the same."""

    site: str


@dataclass
class _Peer:
    state: str
    last_seen: float | None
    interval: float
    incarnation: str = ""
    witness: bool = False
    copies: dict[str, CopyInfo] = field(default_factory=dict)
    copies_sent: str = ""
    """The incarnation whose copies the parent last heard of (first heartbeat: always send)."""
    labels: dict[str, str] = field(default_factory=dict)
    site_capacity: int | None = None
    constraints: dict[str, str] = field(default_factory=dict)
    facts_of: str = ""
    """The incarnation the facts above come from (a site's config changes only by restart)."""


def classify(age: float, interval: float, suspect_after: float, silent_after: float) -> str:
    if age > silent_after * interval:
        return SILENT
    if age > suspect_after * interval:
        return SUSPECT
    return ALIVE


class PeerWatch(HarmonyActor):
    kind = "peers"

    def started(self) -> None:
        cfg = self.ctx.config
        self.interval = cfg.timings.heartbeat_interval
        self.born = self.ctx.clock.monotonic()
        self._last_tick: float | None = None
        self._stalls: deque[tuple[float, float]] = deque(maxlen=MAX_STALLS)
        self.stalled = 0.0
        """Seconds of this agent's own stalls discounted so far (shown on the board)."""
        known = mesh_sites(cfg) - {cfg.site}
        self.interest = heartbeat_interest(cfg, core_sites(cfg))
        if self.interest is not None:
            known |= self.interest
        bridge = self.ctx.bridge
        self.gate = HeartbeatGate(
            cfg.site, self.ctx.mesh, known, cfg.witness, bridge.stats if bridge else None
        )
        watched = known if self.interest is None else self.interest
        self.peers: dict[str, _Peer] = {
            s: _Peer(UNKNOWN, None, self.interval) for s in sorted(watched)
        }
        # Heartbeats are absorbed in batches: the loop thread keeps the latest one per site
        # and wakes this actor only for news (a new incarnation, changed copies, a peer not
        # known alive). Routine heartbeats are folded in at the next check tick, with their
        # exact arrival time, so detection is unchanged and a mesh of N sites costs each
        # agent 2N thread wake-ups per second less.
        self._hb_lock = threading.Lock()
        self._latest: dict[str, tuple[Heartbeat, float]] = {}
        self._told: dict[str, tuple[str, dict[str, CopyInfo]]] = {}
        self._not_alive: set[str] = set(self.peers)
        self.subs: dict[str, Subscription] = {}
        """Heartbeat subscriptions by subject: one wildcard, or one per watched site."""
        self.timers: OverdueTimers | None = None
        self._plan: dict[str, tuple[float, float]] = {}
        if bridge is not None:
            self.timers = OverdueTimers(bridge.conn.loop, self.ctx.clock.monotonic, self._due)
            self.period = max(HOUSEKEEPING, self.interval)
        else:
            self.period = self.interval / TICKS_PER_INTERVAL
        self._subscribe()
        self.every(self.period, CheckPeers())
        self._expect(force=True)
        self._publish()

    def stopping(self) -> None:
        for sub in self.subs.values():
            sub.unsubscribe()
        self.subs = {}
        if self.timers is not None:
            self.timers.close()

    def _due(self, site: str, due: float) -> None:
        """On the loop thread: `site` is overdue (its timer fired)."""
        self.actor_ref.tell(CheckPeers(due))

    def heard_subjects(self) -> set[str]:
        """The heartbeat subjects the interest asks for."""
        mesh = self.ctx.mesh
        if self.interest is None:
            return {subjects.heartbeats(mesh)}
        return {subjects.heartbeat(mesh, s) for s in self.interest}

    def _subscribe(self) -> None:
        """Make the subscriptions match the interest: new subjects first, then the old ones
        dropped (so a site watched before and after is never unheard in between)."""
        if self.ctx.bridge is None:
            return
        want = self.heard_subjects()
        for subject in sorted(want - set(self.subs)):
            self.subs[subject] = self.ctx.bridge.conn.subscribe(subject, self._on_msg)
        for subject in sorted(set(self.subs) - want):
            self.subs.pop(subject).unsubscribe()

    def _on_msg(self, msg: Msg) -> None:
        """On the loop thread: check, decode and hand over; never block here."""
        received = self.ctx.clock.monotonic()
        hb = self.gate.check(msg)
        if hb is None:
            return
        news = (hb.incarnation, hb.copies)
        self.ctx.peer_view.heard(hb.site, received)
        if self.timers is not None:
            self.timers.heard(hb.site, received)
        with self._hb_lock:
            self._latest[hb.site] = (hb, received)
            urgent = hb.site in self._not_alive or self._told.get(hb.site) != news
            if urgent:
                self._told[hb.site] = news
        if urgent:
            self.actor_ref.tell(HeartbeatSeen(hb, received))

    def _absorb_latest(self) -> None:
        """Fold in the routine heartbeats the loop kept since the last tick."""
        with self._hb_lock:
            latest, self._latest = self._latest, {}
        for hb, received in latest.values():
            peer = self.peers.get(hb.site)
            if peer is None or peer.last_seen is None or received > peer.last_seen:
                self._fold(HeartbeatSeen(hb, received))

    @handles(HeartbeatSeen)
    def on_heartbeat_seen(self, msg: HeartbeatSeen) -> None:
        self._fold(msg)
        self._expect()

    def _fold(self, msg: HeartbeatSeen) -> None:
        hb = msg.hb
        peer = self.peers.get(hb.site)
        if peer is None:
            if not self.gate.learned(hb.site):
                return  # not a peer: the table never grows beyond known + learned
            peer = self.peers[hb.site] = _Peer(UNKNOWN, None, hb.interval)
        if peer.last_seen is not None and msg.received < peer.last_seen:
            return  # an older heartbeat than one already folded in from the batch
        restarted = bool(peer.incarnation) and peer.incarnation != hb.incarnation
        peer.last_seen, peer.interval, peer.witness = msg.received, hb.interval, hb.witness
        peer.incarnation = hb.incarnation
        news = peer.facts_of != hb.incarnation
        if news:
            peer.labels, peer.site_capacity = dict(hb.labels), hb.site_capacity
            peer.constraints, peer.facts_of = dict(hb.constraints), hb.incarnation
            self._publish()
        if peer.state != ALIVE or restarted:
            self._change(hb.site, peer, ALIVE, 0.0, restarted)
        if news:
            self.tell_parent(PeerFacts(hb.site))
        if (hb.copies != peer.copies or peer.copies_sent != hb.incarnation) and self.parent:
            peer.copies, peer.copies_sent = dict(hb.copies), hb.incarnation
            self.tell_parent(PeerCopies(hb.site, peer.copies))

    @handles(ResendCopies)
    def on_resend_copies(self, _: ResendCopies) -> None:
        for peer in self.peers.values():
            peer.copies_sent = ""

    @handles(CheckPeers)
    def on_check_peers(self, msg: CheckPeers) -> None:
        self._absorb_latest()
        now = self.ctx.clock.monotonic()
        self._discount_stall(now, msg.due)
        t = self.ctx.config.timings
        for site, peer in self.peers.items():
            if peer.last_seen is None:
                # Never heard of: agents start at different speeds, so give a peer a whole
                # lease TTL to show up before calling it silent (a standby that booted first
                # must not take over from a primary that is still starting).
                waited = now - self.born > max(t.silent_after * peer.interval, t.lease_ttl)
                if waited and peer.state != SILENT:  # once: not at every tick
                    self._change(site, peer, SILENT, None)
                continue
            age = now - peer.last_seen - self._stalled_since(peer.last_seen)
            new = classify(age, peer.interval, t.suspect_after, t.silent_after)
            if new != peer.state:
                self._change(site, peer, new, age if peer.last_seen is not None else None)
        self._publish()
        self._expect(force=msg.due is not None)  # the fired timer is gone: always re-arm

    def _expect(self, force: bool = False) -> None:
        """Tell the overdue timers when each peer becomes suspect (alive), silent (suspect)
        or, never heard of, silent after the start-up window; our stalls are excused."""
        if self.timers is None:
            return
        t = self.ctx.config.timings
        plan: dict[str, tuple[float, float]] = {}
        for site, peer in self.peers.items():
            if peer.state == SILENT:
                continue  # its next heartbeat is news: told at once
            if peer.last_seen is None:
                window = max(t.silent_after * peer.interval, t.lease_ttl)
                plan[site] = (self.born, self.born + window + DEADLINE_EPSILON)
                continue
            after = t.suspect_after if peer.state == ALIVE else t.silent_after
            due = peer.last_seen + after * peer.interval + self._stalled_since(peer.last_seen)
            plan[site] = (peer.last_seen, due + DEADLINE_EPSILON)
        if force or plan != self._plan:
            self._plan = plan
            self.timers.expect(plan)

    def _discount_stall(self, now: float, due: float | None) -> None:
        """Remember how much later than it should this check runs, beyond the slack, as a
        stall: after its deadline (a timer's check) or after the periodic check before it.
        Our own start-up wait is excused it too."""
        if due is None:
            last, self._last_tick = self._last_tick, now
            if last is None:
                return
            due = last + self.period
        slack = (STALL_SLACK_TICKS - 1) * self.interval / TICKS_PER_INTERVAL
        start = max(due + slack, self._stalls[-1][1] if self._stalls else due)
        stall = now - start
        if stall <= 0:
            return
        self.stalled += stall
        self.born = min(now, self.born + stall)
        self._stalls.append((start, now))
        log.info("no peer check for %.2f s: this agent was starved; not held against peers", stall)

    def _stalled_since(self, t: float) -> float:
        """Seconds of our stalls after `t`: not counted in a silence that began at `t`
        (kept apart from `last_seen`, which stays the true arrival time: it orders
        heartbeats)."""
        return sum(max(0.0, end - max(start, t)) for start, end in self._stalls)

    def _change(
        self, site: str, peer: _Peer, new: str, age: float | None, restarted: bool = False
    ) -> None:
        old, peer.state = peer.state, new
        with self._hb_lock:
            if new == ALIVE:
                self._not_alive.discard(site)
            else:
                self._not_alive.add(site)
        if new == SILENT:
            # The workloads forget a silent peer's copies; after a heal they must hear of
            # them again even if nothing changed on that side.
            peer.copies, peer.copies_sent = {}, ""
        log.info("peer %s: %s -> %s%s", site, old, new, " (restarted)" if restarted else "")
        self.tell_parent(PeerChanged(site, old, new, age, restarted))
        self._publish()

    def _publish(self) -> None:
        now = self.ctx.clock.monotonic()
        infos = {
            site: PeerInfo(
                site=site,
                state=p.state,
                last_heartbeat_age=None if p.last_seen is None else round(now - p.last_seen, 3),
                witness=p.witness,
                labels=p.labels,
                site_capacity=p.site_capacity,
                constraints=p.constraints,
            )
            for site, p in self.peers.items()
        }
        self.ctx.peer_view.publish(infos, now)
        counts: dict[str, int] = {}
        for p in self.peers.values():
            counts[p.state] = counts.get(p.state, 0) + 1
        detail = {k: str(v) for k, v in sorted(counts.items())}
        detail["hears"] = "all" if self.interest is None else str(len(self.interest))
        if self.stalled:
            detail["stalled"] = f"{self.stalled:.1f}s"
        self.ctx.board.update(self.path, detail=detail)
