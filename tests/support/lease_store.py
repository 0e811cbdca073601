"""One lease key in a NATS JetStream KV bucket, as docs/design.md describes it, in memory.

``create`` succeeds only on an absent key; ``update(last=rev)`` is CAS on the key's last
revision, whoever wrote it (it does not check ownership); revisions come from one stream
sequence, so they only grow; the key expires no earlier than TTL after its last write and
leaves a marker; nothing commits while the stream has no leader.
"""

from __future__ import annotations

from harmony.strategies import Event
from harmony.strategies.events import LeaseObservedGone, LeaseObservedHeld


class Store:
    """One key of a KV bucket with max_age = ttl and limit markers."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.seq = 0
        self.holder: str | None = None  # live value (the site that wrote it)
        self.owner: tuple[str, int] | None = None  # (site, incarnation) of the live value
        self.revision: int | None = None  # last revision of the key (value or marker)
        self.written_at = 0.0
        self.available = True  # False: no stream leader (election): nothing commits

    def _bump(self) -> int:
        self.seq += 1
        self.revision = self.seq
        return self.seq

    def write(self, site: str, last: int | None, now: float, incarnation: int = 0) -> int | None:
        """create (last None) or update(last=...): CAS; the new revision or None if refused."""
        if not self.available or last != self.revision:
            return None
        self.holder, self.owner, self.written_at = site, (site, incarnation), now
        return self._bump()

    def delete(self, last: int) -> bool:
        if not self.available or last != self.revision or self.holder is None:
            return False
        self.holder = self.owner = None
        self._bump()
        return True

    def may_expire(self, now: float) -> bool:
        return self.available and self.holder is not None and now >= self.written_at + self.ttl

    def expire(self) -> None:
        self.holder = self.owner = None
        self._bump()  # the MaxAge marker

    def drop_marker(self) -> None:
        if self.holder is None:
            self.revision = None  # limit_marker_ttl passed: the key is absent

    def observation(self) -> Event:
        if self.holder is not None and self.revision is not None:
            return LeaseObservedHeld(self.holder, self.revision)
        return LeaseObservedGone(self.revision)
