"""Reading the mesh from outside an agent: snapshots of every site's actor tree.

Used by `harmony status`, the demo's live view, the TUI and the tests. This is also where
remote data enters a display: every string of a snapshot or journal event is made
`textsafe.printable` here (and URLs redacted), once, so `harmony status` and the TUI never
put a remote terminal escape (a title, an OSC 52 clipboard write) on a user's terminal.
"""

from __future__ import annotations

import time

import msgspec
from nats.aio.client import Client

from harmony.actors.journal import JournalEvent
from harmony.actors.messages import ActorInfo, PeerInfo, Snapshot, SnapshotRequest
from harmony.mesh import subjects, summaries, wire
from harmony.mesh.connection import MeshConnection
from harmony.security.identity import Identity
from harmony.strategies.horizontal import slot_of
from harmony.textsafe import printable, redact_url


def mesh_target(
    config: str | None, servers: list[str] | None, mesh: str | None
) -> tuple[str, list[str]]:
    """(mesh name, server URLs) from a site config file, or from explicit URLs and a name.

    Raises ConfigError for a bad file, ValueError when neither form is given.
    """
    if config:
        from harmony.actors.runtime import Agent
        from harmony.config import load_config

        cfg = load_config(config)
        return cfg.mesh, Agent(cfg).servers()
    if not (servers and mesh):
        raise ValueError("give --config FILE, or both --server URL and --mesh NAME")
    return mesh, list(servers)


def mesh_identity(config: str | None, identity: str | None) -> Identity | None:
    """Who an operator's tool is on the mesh: `identity` (an identity directory, e.g.
    ``DIR/identities/admin``), else the site identity of the `config` given (a site may
    watch: snapshots and events), else nobody (an insecure mesh). Raises ConfigError naming
    the missing or unreadable file."""
    from harmony.security.identity import load_identity, site_identity

    if identity:
        return load_identity(identity)
    if config:
        from harmony.config import load_config

        cfg = load_config(config)
        if cfg.security is not None and cfg.security.dir:
            return site_identity(cfg.security.dir, cfg.site)
    return None


def expected_sites(snaps: dict[str, Snapshot]) -> set[str]:
    """Sites we should hear from: every responder, and every peer of theirs not seen silent."""
    want = set(snaps)
    for s in snaps.values():
        want.update(p.site for p in s.peers if p.state != "silent")
    return want


def collect_snapshots(conn: MeshConnection, mesh: str, timeout: float = 2.0) -> dict[str, Snapshot]:
    """Ask every site of `mesh` for its snapshot; return as soon as every expected site
    answered, or at `timeout` with whatever came."""
    snaps: dict[str, Snapshot] = {}

    def add(raw: bytes) -> None:
        try:
            snap = wire.decode(raw)
        except wire.WireError:
            return
        if isinstance(snap, Snapshot):
            snap = clean_snapshot(snap)
            snaps[snap.site] = snap

    def done(replies: list[bytes]) -> bool:
        add(replies[-1])
        return bool(snaps) and expected_sites(snaps) <= set(snaps)

    conn.gather(subjects.snapshot_all(mesh), wire.encode(SnapshotRequest()), timeout, done)
    return dict(sorted(snaps.items()))


def collect_snapshot(
    conn: MeshConnection, mesh: str, site: str, timeout: float = 2.0
) -> Snapshot | None:
    """One site's snapshot (None when it did not answer within `timeout`)."""
    got: list[Snapshot] = []

    def done(replies: list[bytes]) -> bool:
        try:
            snap = wire.decode(replies[-1])
        except wire.WireError:
            return False
        if isinstance(snap, Snapshot) and snap.site == site:
            got.append(clean_snapshot(snap))
        return bool(got)

    conn.gather(subjects.snapshot(mesh, site), wire.encode(SnapshotRequest()), timeout, done)
    return got[0] if got else None


def collect_summaries(
    conn: MeshConnection, mesh: str, timeout: float = 2.0
) -> dict[str, summaries.Summary]:
    """Every site's summary from the sites bucket, in one stream read ({} when there is no
    bucket): the mesh-wide view at a thousand sites, without asking any agent."""

    async def read(nc: Client) -> dict[str, summaries.Summary]:
        return await summaries.read_all(nc, mesh, timeout)

    found = conn.run(read, timeout + 1.0)
    return {site: clean_summary(s) for site, s in found.items()}


def clean_summary(s: summaries.Summary) -> summaries.Summary:
    """Its free text made printable and short (names and states are patterns already)."""
    v = s.value
    items = [
        summaries.Unhealthy(what=printable(u.what, NAME_LIMIT), why=printable(u.why, 200))
        for u in v.unhealthy
    ]
    return msgspec.structs.replace(s, value=msgspec.structs.replace(v, unhealthy=items))


def sites_of_workload(found: dict[str, summaries.Summary], workload: str) -> list[str]:
    """The sites whose summary lists `workload` as placed there, or one of its slots (a
    summary lists a horizontal workload's slots, which run, not the workload that steers
    them)."""

    def ours(name: str) -> bool:
        slot = slot_of(name)
        return name == workload or (slot is not None and slot[0] == workload)

    return [site for site, s in found.items() if any(ours(w) for w in s.value.placed)]


NAME_LIMIT = 128
"""Names (sites, actor paths, states) are short; a longer one is cut, not wrapped across
the screen."""


def clean_snapshot(snap: Snapshot) -> Snapshot:
    """`snap` with every string printable and bounded, and its NATS URL redacted: what a
    display may show of a reply that anyone on the subject could have forged."""

    def name(s: str) -> str:
        return printable(s, NAME_LIMIT)

    actors = [
        ActorInfo(
            path=name(a.path),
            kind=name(a.kind),
            state=name(a.state),
            restarts=a.restarts,
            policy=printable(a.policy),
            detail={name(k): printable(v) for k, v in a.detail.items()},
        )
        for a in snap.actors
    ]
    peers = [
        PeerInfo(
            site=name(p.site),
            state=name(p.state),
            last_heartbeat_age=p.last_heartbeat_age,
            witness=p.witness,
        )
        for p in snap.peers
    ]
    return msgspec.structs.replace(
        snap,
        mesh=name(snap.mesh),
        site=name(snap.site),
        incarnation=name(snap.incarnation),
        actors=actors,
        peers=peers,
        nats_url=printable(redact_url(snap.nats_url), NAME_LIMIT),
    )


def clean_event(event: JournalEvent) -> JournalEvent:
    """A journal event from the mesh, made safe to show like `clean_snapshot`."""
    return msgspec.structs.replace(
        event,
        site=printable(event.site, NAME_LIMIT),
        workload=printable(event.workload, NAME_LIMIT),
        kind=printable(event.kind, NAME_LIMIT),
        reason=printable(event.reason),
        incarnation=printable(event.incarnation, NAME_LIMIT),
        detail={printable(k, NAME_LIMIT): printable(v) for k, v in event.detail.items()},
    )


def decode_event(raw: bytes) -> JournalEvent | None:
    """A journal event from the wire, cleaned; None for anything else."""
    try:
        event = wire.decode(raw)
    except wire.WireError:
        return None
    return clean_event(event) if isinstance(event, JournalEvent) else None


def rejected_summary(snap: Snapshot) -> str:
    """What a site's bridge refused, by reason ("" when nothing): "3 malformed, 1 relayed".
    Older agents report only the two counters they had."""
    old = {"malformed": snap.malformed, "unknown-actor": snap.unknown_actor}
    counts = dict(snap.rejected) or old
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()) if n)


def snapshot_to_builtins(snap: Snapshot) -> object:
    return msgspec.to_builtins(snap)


def expected_peers(snap: Snapshot, sites: set[str]) -> set[str]:
    """The sites of `sites` that `snap`'s site should see alive: every other one, or, when
    its PeerWatch hears only its interest (a mesh that names cores), those in its peer table."""
    watch = next((a for a in snap.actors if a.path == "agent/peers"), None)
    if watch is None or watch.detail.get("hears", "all") == "all":
        return sites - {snap.site}
    return {p.site for p in snap.peers} & sites - {snap.site}


def mesh_formed(snaps: dict[str, Snapshot], sites: set[str]) -> bool:
    """Every site answered and sees alive every other site it listens to."""
    return set(snaps) >= sites and all(
        {p.site for p in s.peers if p.state == "alive"} >= expected_peers(s, sites)
        for s in snaps.values()
    )


def wait_formed(conn: MeshConnection, mesh: str, sites: set[str], timeout: float) -> bool:
    """Wait until `mesh_formed`: routes are up and heartbeats flow between all sites."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if mesh_formed(collect_snapshots(conn, mesh, timeout=1.0), sites):
            return True
        time.sleep(0.1)
    return False
