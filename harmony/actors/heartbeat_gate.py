"""HeartbeatGate: which heartbeats count, before PeerWatch judges anyone alive by them.

A heartbeat is dropped, and counted in the bridge's `WireStats`, when it was relayed (headers
or a ``$JS`` reply: a site publishes its own, plainly), when it is too large or does not
decode, when its `site` or `mesh` is not the one its subject names (the NATS server vouches
for the subject), or when its site is not a peer. (One forged heartbeat from an unknown site
used to join the peer table, and its announced copies made every split-brain-allowed site
stop its own.)

One exception, because a witness is named in no workload's topology: a site not named in the
configuration joins as a peer if its heartbeat is a witness's that announces no copies (it
steers nothing but liveness display), or on a witness itself (which runs nothing); at most
`MAX_LEARNED` such peers. A mesh roster, when there is one, names every site instead.

`check` runs on the connection's loop thread; `learned` on PeerWatch's.
"""

from __future__ import annotations

import threading
from collections.abc import Set

from nats.aio.msg import Msg

from harmony.actors.messages import Heartbeat
from harmony.mesh import wire
from harmony.mesh.admission import WireStats
from harmony.mesh.remote import Refused

MAX_LEARNED = 16
"""Peers not named in the configuration (witnesses): the table stays bounded."""


class HeartbeatGate:
    def __init__(
        self, site: str, mesh: str, known: Set[str], witness: bool, stats: WireStats | None
    ) -> None:
        self.site, self.mesh, self.known, self.witness = site, mesh, frozenset(known), witness
        self.stats = stats
        self._lock = threading.Lock()
        self._learned: set[str] = set()

    def check(self, msg: Msg) -> Heartbeat | None:
        """The heartbeat of a site of this mesh, sent on its own subject; None otherwise."""
        parts = msg.subject.split(".")
        site = parts[2] if len(parts) == 4 else ""
        if site == self.site:
            return None  # our own, echoed back
        try:
            if wire.relayed(msg.headers, msg.reply):
                raise Refused(wire.ERR_RELAYED, "headers or a $JS reply: relayed, not sent")
            return self._heartbeat(site, msg.data)
        except Refused as e:
            if self.stats is not None:
                self.stats.reject(e.code, msg.subject, e.reason)
            return None

    def learned(self, site: str) -> bool:
        """`site` is not in the configuration but was admitted as a witness."""
        with self._lock:
            return site in self._learned

    def _heartbeat(self, site: str, data: bytes) -> Heartbeat:
        if len(data) > wire.MAX_FRAME_BYTES:
            raise Refused(wire.ERR_TOO_LARGE, f"{len(data)} bytes")
        try:
            hb = wire.decode(data)
        except wire.WireError as e:
            raise Refused(wire.ERR_MALFORMED, str(e)) from None
        if not isinstance(hb, Heartbeat):
            raise Refused(wire.ERR_MALFORMED, f"{type(hb).__name__} is not a heartbeat")
        if hb.site != site or hb.mesh != self.mesh:
            raise Refused(
                wire.ERR_SUBJECT_MISMATCH, f"heartbeat of {hb.mesh}/{hb.site} on this subject"
            )
        if site not in self.known and not self._may_learn(hb):
            raise Refused(wire.ERR_UNKNOWN_SENDER, f"{site!r} is not a site of this mesh")
        return hb

    def _may_learn(self, hb: Heartbeat) -> bool:
        """A site the configuration does not name: a witness that claims no copy (or any
        site, on a witness), while fewer than MAX_LEARNED were admitted."""
        harmless = (hb.witness and not hb.copies) or self.witness
        with self._lock:
            if hb.site in self._learned:
                return harmless
            if harmless and len(self._learned) < MAX_LEARNED:
                self._learned.add(hb.site)
                return True
        return False
