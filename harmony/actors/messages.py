"""Messages of the actor tree that cross the wire (each one is a `wire.Message`).

What an actor acts on (commands, heartbeats) uses `Text` and `Token`: a control character or
an impossible token makes the whole message malformed, so the bridge answers with an error
and no actor sees it. Replies that are only displayed (`Output`, `ActorInfo`,
`CommandResult`, `ProbeResult.error`) are made `printable` instead.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from harmony.mesh.wire import Message, Text, Token, printable

Seconds = Annotated[float, msgspec.Meta(gt=0, le=3600)]
"""A duration from the wire that an actor waits on: positive and finite."""

# -- heartbeats and liveness -------------------------------------------------------------


class Capacity(Message):
    cpus: int
    load1: float
    mem_available_mb: int


class CopyInfo(Message):
    """A running copy of a workload, as its site announces it in heartbeats."""

    started_wall: float
    score: float = 0.0
    token: Token | None = None


class Heartbeat(Message):
    """Published by each site's SiteActor every `heartbeat_interval` seconds."""

    mesh: Text
    site: Text
    seq: int
    incarnation: Text
    """Changes when the agent restarts, so peers can tell a restart from a hiccup."""
    mono: float
    wall: float
    interval: Seconds
    witness: bool = False
    health: Text = "ok"
    capacity: Capacity | None = None
    copies: dict[Text, CopyInfo] = {}
    """Workload name -> the copy this site runs (split-brain-allowed reconciliation)."""


# -- diagnostics: a site's agent reaching another site's agent ----------------------------


class Ping(Message):
    text: Text = ""


class Pong(Message):
    text: Text
    site: Text


class ProbePeer(Message):
    """Ask a site actor to ping another site's site actor; answered with `ProbeResult`."""

    target: Text
    timeout: Seconds = 2.0


class ProbeResult(Message):
    source: Text
    target: Text
    ok: bool
    rtt_ms: float = 0.0
    error: str = ""

    def __post_init__(self) -> None:
        self.error = printable(self.error)


class Notice(Message):
    """A one-way note for a site actor; it keeps the last few (see `GetNotices`)."""

    text: Text
    sender: Text = ""


class SendNotice(Message):
    """Ask a site actor to tell `Notice(text)` to the site actor of `target`."""

    target: Text
    text: Text


class GetNotices(Message):
    pass


class Notices(Message):
    items: list[Notice]
    total: int = 0
    """How many notices the site actor has received since it started."""


# -- the actor tree snapshot --------------------------------------------------------------


class ActorInfo(Message):
    path: str
    kind: str
    state: str
    restarts: int = 0
    policy: str = ""
    detail: dict[str, str] = {}

    def __post_init__(self) -> None:
        self.path, self.kind = printable(self.path), printable(self.kind)
        self.state, self.policy = printable(self.state), printable(self.policy)
        self.detail = {printable(k): printable(v) for k, v in self.detail.items()}


class PeerInfo(Message):
    site: Text
    state: Text
    last_heartbeat_age: float | None = None
    witness: bool = False


class SnapshotRequest(Message):
    pass


class Snapshot(Message):
    mesh: Text
    site: Text
    witness: bool
    incarnation: Text
    mono: float
    wall: float
    actors: list[ActorInfo]
    peers: list[PeerInfo]
    malformed: int = 0
    unknown_actor: int = 0
    nats_url: Text = ""


# -- workload commands (from the workload supervisor, or from an operator over the mesh) ---


class StartWorkload(Message):
    token: Token | None = None
    reason: Text = ""


class StopWorkload(Message):
    reason: Text = ""


class FenceWorkload(Message):
    reason: Text = ""


class GetOutput(Message):
    lines: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 50


class Output(Message):
    lines: list[str]

    def __post_init__(self) -> None:
        self.lines = [printable(line) for line in self.lines]


class MoveWorkload(Message):
    """Operator: move the workload to `target` (a site of its topology). Sent to the
    workload supervisor of the site that runs it; answered with `CommandResult`."""

    target: Text
    reason: Text = ""
    origin: Text = ""
    """Empty from an operator; the site that forwarded it, when one site tells the others."""


class DrainSite(Message):
    """Operator: move every workload off this site (sent to its `agent`); `CommandResult`."""

    reason: Text = ""


class CommandResult(Message):
    """The outcome of an operator command, as the receiving site sees it."""

    ok: bool
    detail: str = ""

    def __post_init__(self) -> None:
        self.detail = printable(self.detail)
