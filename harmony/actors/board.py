"""The board: each actor writes its own line; the snapshot reads them all at once.

Answering "what does the tree look like?" must work even while an actor is busy or stuck,
and must never make the loop thread wait for an actor. So actors publish their state here
(a lock-protected dict) whenever it changes, and snapshot requests read the board, not the
actors.
"""

from __future__ import annotations

import threading

import msgspec

from harmony.actors.messages import ActorInfo, CopyInfo, PeerInfo


class Board:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: dict[str, ActorInfo] = {}

    def put(self, info: ActorInfo) -> None:
        with self._lock:
            self._lines[info.path] = info

    def update(self, path: str, **changes: object) -> None:
        """Change some fields of an existing line (no-op for a path not on the board)."""
        with self._lock:
            old = self._lines.get(path)
            if old is not None:
                self._lines[path] = msgspec.structs.replace(old, **changes)

    def remove(self, path: str) -> None:
        with self._lock:
            self._lines.pop(path, None)
            prefix = path + "/"
            for p in [p for p in self._lines if p.startswith(prefix)]:
                del self._lines[p]

    def get(self, path: str) -> ActorInfo | None:
        with self._lock:
            return self._lines.get(path)

    def lines(self) -> list[ActorInfo]:
        with self._lock:
            return [self._lines[p] for p in sorted(self._lines)]


class PeerView:
    """The latest peer table written by PeerWatch, read by snapshots on the loop thread.

    PeerWatch publishes when a peer changes, not at every heartbeat; the heartbeats' arrival
    times come straight from the loop thread (`heard`), so an age read here is the true age
    of the newest heartbeat, not of the one PeerWatch last looked at."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._infos: dict[str, PeerInfo] = {}
        self._at = 0.0
        self._heard: dict[str, float] = {}

    def publish(self, infos: dict[str, PeerInfo], at: float) -> None:
        with self._lock:
            self._infos, self._at = infos, at

    def heard(self, site: str, at: float) -> None:
        with self._lock:
            if at > self._heard.get(site, float("-inf")):
                self._heard[site] = at

    def read(self, now: float) -> list[PeerInfo]:
        """Peers with heartbeat ages as of `now`."""
        with self._lock:
            infos, at, heard = self._infos, self._at, dict(self._heard)
        out = []
        for site in sorted(infos):
            p = infos[site]
            if p.last_heartbeat_age is not None:
                age = p.last_heartbeat_age + max(0.0, now - at)
                if site in heard:
                    age = min(age, max(0.0, now - heard[site]))
                p = msgspec.structs.replace(p, last_heartbeat_age=round(age, 3))
            out.append(p)
        return out


class CopyBoard:
    """This site's running copies, by workload: written by workload supervisors, read by the
    SiteActor for every heartbeat (how SplitBrainAllowed sites see each other's copies)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._copies: dict[str, CopyInfo] = {}

    def set(self, workload: str, info: CopyInfo | None) -> None:
        with self._lock:
            if info is None:
                self._copies.pop(workload, None)
            else:
                self._copies[workload] = info

    def read(self) -> dict[str, CopyInfo]:
        with self._lock:
            return dict(self._copies)
