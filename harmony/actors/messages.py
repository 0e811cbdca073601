"""Messages of the actor tree that cross the wire (each one is a `wire.Message`)."""

from __future__ import annotations

from harmony.mesh.wire import Message

# -- heartbeats and liveness -------------------------------------------------------------


class Capacity(Message):
    cpus: int
    load1: float
    mem_available_mb: int


class CopyInfo(Message):
    """A running copy of a workload, as its site announces it in heartbeats."""

    started_wall: float
    score: float = 0.0
    token: int | None = None


class Heartbeat(Message):
    """Published by each site's SiteActor every `heartbeat_interval` seconds."""

    mesh: str
    site: str
    seq: int
    incarnation: str
    """Changes when the agent restarts, so peers can tell a restart from a hiccup."""
    mono: float
    wall: float
    interval: float
    witness: bool = False
    health: str = "ok"
    capacity: Capacity | None = None
    copies: dict[str, CopyInfo] = {}
    """Workload name -> the copy this site runs (split-brain-allowed reconciliation)."""


# -- diagnostics: a site's agent reaching another site's agent ----------------------------


class Ping(Message):
    text: str = ""


class Pong(Message):
    text: str
    site: str


class ProbePeer(Message):
    """Ask a site actor to ping another site's site actor; answered with `ProbeResult`."""

    target: str
    timeout: float = 2.0


class ProbeResult(Message):
    source: str
    target: str
    ok: bool
    rtt_ms: float = 0.0
    error: str = ""


class Notice(Message):
    """A one-way note for a site actor; it keeps the last few (see `GetNotices`)."""

    text: str
    sender: str = ""


class SendNotice(Message):
    """Ask a site actor to tell `Notice(text)` to the site actor of `target`."""

    target: str
    text: str


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


class PeerInfo(Message):
    site: str
    state: str
    last_heartbeat_age: float | None = None
    witness: bool = False


class SnapshotRequest(Message):
    pass


class Snapshot(Message):
    mesh: str
    site: str
    witness: bool
    incarnation: str
    mono: float
    wall: float
    actors: list[ActorInfo]
    peers: list[PeerInfo]
    malformed: int = 0
    unknown_actor: int = 0
    nats_url: str = ""


# -- workload commands (from the workload supervisor, or from an operator over the mesh) ---


class StartWorkload(Message):
    token: int | None = None
    reason: str = ""


class StopWorkload(Message):
    reason: str = ""


class FenceWorkload(Message):
    reason: str = ""


class GetOutput(Message):
    lines: int = 50


class Output(Message):
    lines: list[str]


class MoveWorkload(Message):
    """Operator: move the workload to `target` (a site of its topology). Sent to the
    workload supervisor of the site that runs it; answered with `CommandResult`."""

    target: str
    reason: str = ""
    origin: str = ""
    """Empty from an operator; the site that forwarded it, when one site tells the others."""


class DrainSite(Message):
    """Operator: move every workload off this site (sent to its `agent`); `CommandResult`."""

    reason: str = ""


class CommandResult(Message):
    """The outcome of an operator command, as the receiving site sees it."""

    ok: bool
    detail: str = ""
