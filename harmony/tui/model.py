"""What the TUI knows about the mesh: the last snapshot of every site, merged over time.

Pure data, no Textual and no NATS: the feed hands snapshots and events in, the widgets read
the result. Keeping it free of I/O and clocks (``now`` is always an argument) is what lets
the snapshot tests render a recorded mesh byte for byte, and lets a site that stopped
answering keep its last known tree instead of vanishing from the screen.

A large mesh (more than `SMALL_MESH` sites) is known by its summaries instead: one
collapsed node per site, whose actor tree is there only while the site is `expanded`, and a
`filter_text` that narrows the tree to sites or workloads whose name contains it.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from harmony.actors.journal import JournalEvent
from harmony.actors.messages import ActorInfo, PeerInfo, Snapshot
from harmony.mesh.summaries import Summary

PEER_PREFIX = "agent/peers/@"
"""Peers hang under the PeerWatch actor with this path prefix ('@' is never in actor names)."""

MAX_EVENTS = 1000

# Fields whose change is worth a highlight; ages and counters tick all the time and are not.
SIGNIFICANT_FIELDS = (
    "role",
    "phase",
    "active",
    "token",
    "holder",
    "lease_seen",
    "pid",
    "exit_code",
)

LIVE_STATES = ("alive", "suspect")
STALE = "stale"
"""A large mesh's site whose summary is stale: it stopped writing."""


class Key(NamedTuple):
    """One node of the tree: a site (path ""), an actor of it, or a peer it watches."""

    site: str
    path: str = ""

    @property
    def workload(self) -> str:
        """The workload a node belongs to ('' for site-level nodes)."""
        parts = self.path.split("/")
        if len(parts) >= 3 and parts[0] == "agent" and parts[1] == "workload":
            return parts[2]
        return ""

    @property
    def peer(self) -> str:
        return self.path[len(PEER_PREFIX) :] if self.path.startswith(PEER_PREFIX) else ""


@dataclass
class SiteView:
    """One site as the TUI last saw it: its own snapshot, and how its peers see it."""

    name: str
    snapshot: Snapshot | None = None
    received: float | None = None
    """Local monotonic time of the last snapshot this site itself sent us."""
    answered: bool = False
    """Whether it answered the latest poll; a site that did not is shown greyed."""
    state: str = "unknown"
    witness: bool = False
    hb_age: float | None = None
    """Seconds since its last heartbeat, as the freshest peer saw it at `hb_at`."""
    hb_at: float | None = None

    def actor(self, path: str) -> ActorInfo | None:
        if self.snapshot is None:
            return None
        return next((a for a in self.snapshot.actors if a.path == path), None)

    def steers_slots(self, workload: str) -> bool:
        """`workload` is horizontal here: it runs no copy itself, its slots do."""
        info = self.actor(f"agent/workload/{workload}")
        return info is not None and info.kind == "horizontal"

    def peer(self, name: str) -> PeerInfo | None:
        if self.snapshot is None:
            return None
        return next((p for p in self.snapshot.peers if p.site == name), None)

    def heartbeat_age(self, now: float) -> float | None:
        if self.hb_age is None or self.hb_at is None:
            return None
        return self.hb_age + max(0.0, now - self.hb_at)


@dataclass
class MeshModel:
    """Every site ever seen (never forgotten), the mesh's recent events, and what changed."""

    mesh: str
    sites: dict[str, SiteView] = field(default_factory=dict)
    events: collections.deque[JournalEvent] = field(
        default_factory=lambda: collections.deque(maxlen=MAX_EVENTS)
    )
    changed_at: dict[Key, float] = field(default_factory=dict)
    polls: int = 0
    last_poll: float | None = None
    large: bool = False
    """Known by summaries (more than `SMALL_MESH` sites), not by every site's snapshot."""
    summaries: dict[str, Summary] = field(default_factory=dict)
    expanded: set[str] = field(default_factory=set)
    """A large mesh's sites whose actor trees are shown (and polled)."""
    filter_text: str = ""
    memo: dict[object, tuple[object, object]] = field(default_factory=dict)
    """The large view's labels and summary, kept while their inputs stay equal
    (a thousand site labels are not rebuilt every second; see `harmony.tui.overview`)."""
    _signatures: dict[Key, tuple[str, ...]] = field(default_factory=dict)

    # ------------------------------------------------------------------ input
    def apply(self, snaps: dict[str, Snapshot], at: float) -> set[Key]:
        """Merge one poll's answers received at local time `at`; return the keys whose
        significant fields changed (none on the first poll: nothing is news yet)."""
        first = self.polls == 0
        self.polls += 1
        self.last_poll = at
        for name in {*snaps, *(p.site for s in snaps.values() for p in s.peers)}:
            self.sites.setdefault(name, SiteView(name))
        for name, view in self.sites.items():
            snap = snaps.get(name)
            view.answered = snap is not None
            if snap is not None:
                view.snapshot = snap
                view.received = at
                view.witness = snap.witness
        self._derive_liveness(snaps, at)
        changed: set[Key] = set()
        for key, sig in self._signatures_now().items():
            if self._signatures.get(key) != sig and not first:
                changed.add(key)
                self.changed_at[key] = at
            self._signatures[key] = sig
        return changed

    def apply_summaries(self, found: dict[str, Summary], at: float) -> None:
        """A large mesh's summaries, read at local time `at`: the sites and their states."""
        self.large = True
        self.polls += 1
        self.last_poll = at
        self.summaries = dict(found)
        for name, s in found.items():
            view = self.sites.setdefault(name, SiteView(name))
            view.state = STALE if s.stale else s.value.state
            view.witness = s.value.witness

    def apply_sites(self, snaps: dict[str, Snapshot | None], at: float) -> None:
        """The expanded sites of a large mesh, each asked alone (None: did not answer)."""
        for name, snap in snaps.items():
            if name not in self.expanded:
                continue  # collapsed while it was being asked
            view = self.sites.setdefault(name, SiteView(name))
            view.answered = snap is not None
            if snap is not None:
                view.snapshot, view.received = snap, at

    def expand(self, site: str) -> None:
        self.expanded.add(site)

    def collapse(self, site: str) -> None:
        """Forget a collapsed site's tree: a later expand shows it fresh, not as it was."""
        self.expanded.discard(site)
        view = self.sites.get(site)
        if view is not None:
            view.snapshot, view.received, view.answered = None, None, False

    def shown(self, name: str) -> bool:
        """Whether the filter lets a site through: its name, or a workload placed there
        (as its summary, or its snapshot when expanded, says), contains the text."""
        text = self.filter_text.lower()
        if not text or text in name.lower():
            return True
        summary = self.summaries.get(name)
        placed = summary.value.placed if summary is not None else []
        return any(text in w.lower() for w in [*placed, *self._snapshot_workloads(name)])

    def _snapshot_workloads(self, name: str) -> list[str]:
        view = self.sites.get(name)
        if view is None or view.snapshot is None:
            return []
        return [Key(name, a.path).workload for a in view.snapshot.actors]

    def add_event(self, event: JournalEvent) -> None:
        self.events.append(event)

    def _derive_liveness(self, snaps: dict[str, Snapshot], at: float) -> None:
        views: dict[str, list[PeerInfo]] = collections.defaultdict(list)
        for snap in snaps.values():
            for p in snap.peers:
                views[p.site].append(p)
        for name, view in self.sites.items():
            seen = views.get(name, [])
            view.witness = view.witness or any(p.witness for p in seen)
            ages = [p.last_heartbeat_age for p in seen if p.last_heartbeat_age is not None]
            if ages:
                view.hb_age, view.hb_at = min(ages), at
            view.state = _liveness(view.answered, [p.state for p in seen], bool(snaps))

    # ------------------------------------------------------------------ output
    def tree(self) -> list[tuple[Key, Key | None]]:
        """Every node with its parent, parents first, in display order. On a large mesh:
        the sites the filter lets through, with the actor trees of the expanded ones."""
        out: list[tuple[Key, Key | None]] = []
        for name in sorted(self.sites):
            if self.large and not self.shown(name):
                continue
            out.append((Key(name), None))
            if not self.large or name in self.expanded:
                out.extend(self._site_tree(name))
        return out

    def _site_tree(self, name: str) -> list[tuple[Key, Key | None]]:
        """A site's actors (and the peers it watches). A site let through by a workload's
        name only (not its own) shows the matching workloads, not the others."""
        view = self.sites[name]
        if view.snapshot is None:
            return []
        text = self.filter_text.lower()
        narrow = self.large and text and text not in name.lower()
        actors = [
            a
            for a in view.snapshot.actors
            if not narrow
            or text in Key(name, a.path).workload.lower()
            or not Key(name, a.path).workload
        ]
        paths = {a.path for a in actors}
        out: list[tuple[Key, Key | None]] = []
        for info in sorted(actors, key=lambda a: _order(a.path)):
            out.append((Key(name, info.path), Key(name, _parent(info.path, paths))))
        if "agent/peers" in paths:
            for p in sorted(view.snapshot.peers, key=lambda p: p.site):
                out.append((Key(name, PEER_PREFIX + p.site), Key(name, "agent/peers")))
        return out

    def counts(self) -> dict[str, int]:
        c: dict[str, int] = collections.Counter(v.state for v in self.sites.values())
        return dict(sorted(c.items()))

    def workloads(self) -> list[str]:
        names = {
            Key(s, a.path).workload
            for s, v in self.sites.items()
            if v.snapshot is not None
            for a in v.snapshot.actors
        }
        names.update(e.workload for e in self.events)
        return sorted(n for n in names if n)

    def events_for(
        self, site: str | None = None, workload: str | None = None, limit: int | None = None
    ) -> list[JournalEvent]:
        """Recent events, oldest first; a None filter matches everything."""
        found = [e for e in self.events if matches(e, site, workload)]
        return found[-limit:] if limit else found

    def _signatures_now(self) -> dict[Key, tuple[str, ...]]:
        sigs: dict[Key, tuple[str, ...]] = {}
        for name, view in self.sites.items():
            sigs[Key(name)] = (view.state,)
            if view.snapshot is None:
                continue
            for a in view.snapshot.actors:
                sigs[Key(name, a.path)] = (
                    a.state,
                    str(a.restarts),
                    *(a.detail.get(f, "") for f in SIGNIFICANT_FIELDS),
                )
            for p in view.snapshot.peers:
                sigs[Key(name, PEER_PREFIX + p.site)] = (p.state,)
        return sigs


def matches(event: JournalEvent, site: str | None, workload: str | None) -> bool:
    """Whether an event passes a site/workload filter (None: any)."""
    return (site is None or event.site == site) and (workload is None or event.workload == workload)


def _liveness(answered: bool, seen_as: Iterable[str], anyone_answered: bool) -> str:
    """A site's state: the best view any answering peer has of it, checked against whether
    it answered us. Peers decide alive/suspect/silent (they see heartbeats; we only see
    snapshot answers), but a site that answers while all its peers call it silent is cut
    off from them, and one that stops answering while peers still see it alive is 'mute'."""
    states = set(seen_as)
    best = next((s for s in ("alive", "suspect", "silent") if s in states), None)
    if answered:
        return "isolated" if best == "silent" else (best or "alive")
    if not anyone_answered:
        return "unknown"
    if best == "alive":
        return "mute"
    return best or "unknown"


def _order(path: str) -> tuple[int, str]:
    """agent, then its site and peers actors, then workloads (lease before run)."""
    rank = {"agent": 0, "agent/site": 1, "agent/peers": 2}
    return (rank.get(path, 3), path)


def _parent(path: str, paths: set[str]) -> str:
    """The nearest ancestor path that is an actor; "" (the site) for the root actor.

    agent/workload/w hangs under agent: there is no agent/workload actor."""
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    while parent and parent not in paths:
        parent = parent.rsplit("/", 1)[0] if "/" in parent else ""
    return parent
