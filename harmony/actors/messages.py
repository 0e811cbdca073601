"""Messages of the actor tree that cross the wire (each one is a `wire.Message`).

What an actor acts on (commands, heartbeats) uses `Text`, `Name`, `Token`, `Finite` and
`Count`: a control character, an overlong string, an impossible token or a NaN makes the whole
message malformed, so the bridge answers with an error and no actor sees it. Replies that are
only displayed (`Output`, `ActorInfo`, `CommandResult`, `ProbeResult.error`) are made `shown`
(printable, cut) instead. Every string, list and map has a bound (see `harmony.mesh.wire`).
Which sender may send which of these to which actor is `harmony.actors.exports`.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from harmony.config import MAX_HEARTBEAT_INTERVAL
from harmony.mesh.wire import (
    MAX_ITEMS,
    Count,
    Digest,
    Finite,
    Labels,
    Message,
    Name,
    Shown,
    Text,
    Token,
    shown,
)

Seconds = Annotated[float, msgspec.Meta(gt=0, le=3600)]
"""A duration from the wire that an actor waits on: positive and finite (an actor clamps it
further to its own bound, e.g. a probe to the site's ask_timeout)."""

Interval = Annotated[float, msgspec.Meta(gt=0, le=MAX_HEARTBEAT_INTERVAL)]
"""A peer's heartbeat interval: it decides how long that peer may stay quiet before it is
called silent, so an hour-long one would hide a dead peer for hours."""

Lines = Annotated[int, msgspec.Meta(ge=0, le=MAX_ITEMS)]

# -- heartbeats and liveness -------------------------------------------------------------


class Capacity(Message):
    cpus: Count
    load1: Finite
    mem_available_mb: Count


class CopyInfo(Message):
    """A running copy of a workload, as its site announces it in heartbeats."""

    started_wall: Finite
    score: Finite = 0.0
    token: Token | None = None


class Heartbeat(Message):
    """Published by each site's SiteActor every `heartbeat_interval` seconds."""

    mesh: Name
    site: Name
    seq: Count
    incarnation: Text
    """Changes when the agent restarts, so peers can tell a restart from a hiccup."""
    mono: Finite
    wall: Finite
    interval: Interval
    witness: bool = False
    health: Text = "ok"
    capacity: Capacity | None = None
    copies: Annotated[dict[Name, CopyInfo], msgspec.Meta(max_length=MAX_ITEMS)] = {}
    """Workload name -> the copy this site runs (split-brain-allowed reconciliation)."""
    labels: Labels = {}
    """The site's labels (config ``labels``); an older peer sends none."""
    site_capacity: Count | None = None
    """Config ``capacity``: copies of one workload the site takes (`capacity` above is the
    machine's CPU and memory)."""
    constraints: Annotated[dict[Name, Digest], msgspec.Meta(max_length=MAX_ITEMS)] = {}
    """Workload placed here -> the digest of its geo constraints as this site reads them:
    sites that read different constraints refuse the workload (`strategies.geo`)."""


# -- diagnostics: a site's agent reaching another site's agent ----------------------------


class Ping(Message):
    text: Text = ""


class Pong(Message):
    text: Text
    site: Name


class ProbePeer(Message):
    """Ask a site actor to ping another site's site actor; answered with `ProbeResult`."""

    target: Name
    timeout: Seconds = 2.0


class ProbeResult(Message):
    source: Name
    target: Name
    ok: bool
    rtt_ms: Finite = 0.0
    error: Shown = ""

    def __post_init__(self) -> None:
        self.error = shown(self.error)


class Notice(Message):
    """A one-way note for a site actor; it keeps the last few (see `GetNotices`)."""

    text: Text
    sender: Text = ""
    """Set by the receiving bridge's export policy to the sender named in the subject (the
    identity the NATS server vouches for), whatever the message said."""


class SendNotice(Message):
    """Ask a site actor to tell `Notice(text)` to the site actor of `target`."""

    target: Name
    text: Text


class GetNotices(Message):
    pass


class Notices(Message):
    items: Annotated[list[Notice], msgspec.Meta(max_length=MAX_ITEMS)]
    total: Count = 0
    """How many notices the site actor has received since it started."""


# -- the actor tree snapshot --------------------------------------------------------------


class ActorInfo(Message):
    path: Shown
    kind: Shown
    state: Shown
    restarts: Count = 0
    policy: Shown = ""
    detail: Annotated[dict[Shown, Shown], msgspec.Meta(max_length=MAX_ITEMS)] = {}

    def __post_init__(self) -> None:
        self.path, self.kind = shown(self.path), shown(self.kind)
        self.state, self.policy = shown(self.state), shown(self.policy)
        self.detail = {shown(k): shown(v) for k, v in self.detail.items()}


class PeerInfo(Message):
    site: Text
    state: Text
    last_heartbeat_age: Finite | None = None
    witness: bool = False
    labels: Labels = {}
    site_capacity: Count | None = None
    constraints: Annotated[dict[Name, Digest], msgspec.Meta(max_length=MAX_ITEMS)] = {}
    """As the peer's latest heartbeat said (see `Heartbeat`)."""


class SnapshotRequest(Message):
    pass


class Snapshot(Message):
    """Read by operators' tools only (never by an agent): `Text`, not `Name`, for the names,
    so a reply is shown (safely) rather than dropped for one odd character."""

    mesh: Text
    site: Text
    witness: bool
    incarnation: Text
    mono: Finite
    wall: Finite
    actors: Annotated[list[ActorInfo], msgspec.Meta(max_length=MAX_ITEMS)]
    peers: Annotated[list[PeerInfo], msgspec.Meta(max_length=MAX_ITEMS)]
    malformed: Count = 0
    unknown_actor: Count = 0
    nats_url: Text = ""
    rejected: Annotated[dict[Text, Count], msgspec.Meta(max_length=100)] = {}
    """What the wire refused since the agent started, by reason (`malformed`, `not-exported`,
    `unknown-sender`, `too-large`, `rate-limited`, ...; see `harmony.mesh.remote.WireStats`)."""
    labels: Labels = {}
    site_capacity: Count | None = None


# -- workload commands (from the workload supervisor, or from an operator over the mesh) ---


class StartWorkload(Message):
    token: Token | None = None
    reason: Text = ""


class StopWorkload(Message):
    reason: Text = ""


class FenceWorkload(Message):
    reason: Text = ""


class GetOutput(Message):
    lines: Lines = 50


class Output(Message):
    lines: Annotated[list[Shown], msgspec.Meta(max_length=MAX_ITEMS)]

    def __post_init__(self) -> None:
        self.lines = [shown(line) for line in self.lines[-MAX_ITEMS:]]


class MoveWorkload(Message):
    """Operator: move the workload to `target` (a site of its topology). Sent to the
    workload supervisor of the site that runs it; answered with `CommandResult`."""

    target: Name
    reason: Text = ""
    origin: Text = ""
    """Empty from an operator; the site that forwarded it, when one site tells the others (the
    receiving bridge's export policy sets it to the sender named in the subject)."""


class DrainSite(Message):
    """Operator: move every workload off this site (sent to its `agent`); `CommandResult`."""

    reason: Text = ""


class CommandResult(Message):
    """The outcome of an operator command, as the receiving site sees it."""

    ok: bool
    detail: Shown = ""

    def __post_init__(self) -> None:
        self.detail = shown(self.detail)
