"""What each user of a mesh may publish and subscribe to: pure, from the roster.

The server enforces these; the receiving side trusts them. A site publishes only under its
own name (heartbeats, events, actor subjects whose `<from>` is itself) and replies only to
requests it received (``allow_responses``: no ``_INBOX.>`` publish, so no forged replies to
someone else's request). It writes only the lease keys of workloads whose topology names
it, and of JetStream only what a lease client needs on those workloads' lease streams (one
per workload, `harmony.mesh.leases`): reads, consumers for watches, ``STREAM.CREATE`` for
bootstrap (the first site creates the bucket; JetStream refuses to re-create an existing
stream with other settings, so this cannot reconfigure it), and a leader step-down, which the
holder asks for to have its stream led from its own server (it moves the Raft leader, never
the data: a site of the topology can cost the holder a renewal, no more). No one may delete,
purge or update a stream, nor delete a message.

Operators send tells and asks as ``_op`` and request snapshots; readers only read. A site
may request snapshots too (its admin watches with ``harmony status --config``), as a reader.

The sites bucket (``harmony-<mesh>-sites``, `harmony.mesh.summaries`): a site writes only its
own key (and may create the bucket); everyone reads every summary with one ordered consumer.
The prices bucket (``harmony-<mesh>-prices``, `harmony.mesh.prices`) likewise, but only
sites read it (operators see prices in the cost actors' snapshots).
An edge site of a core-and-edge mesh (`harmony.site_roles`) reaches the core over a leaf
link authorised as its site user, with one addition: it may publish to the mesh's ask
inboxes. nats-server carries no response permission over a leaf link (measured: an edge's
reply to a core's ask is dropped, because the core never sends the asker's inbox interest
to a leaf that may not publish there). The edge's own server still holds its agent to
``allow_responses``, but the edge's server is its owner's: it learns the name of every inbox
the core lets it publish to (the core sends it that interest), so the addition is what a
malicious edge can reach. It is kept to the inboxes of asks (`harmony.mesh.replies`: a
random token per request, so knowing the inbox is not enough to answer a request that did
not reach it); the inboxes under ``<inbox>._js`` (`js_inbox`: nats-py's, i.e. every
JetStream API reply and KV watch delivery: leases, summaries, the core list) are denied,
so an edge can neither see nor forge another site's lease answers.

On a server with a leafnode listener (a core of a core-and-edge mesh) a user also says how
it may connect (`UserPermissions.connection_types`): only an edge's site user may open a
leaf link; a core site, an operator or a reader connects as a client only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from harmony.mesh import subjects  # a stdlib-only leaf: the one definition of the scheme
from harmony.mesh.prices import bucket_name as prices_bucket
from harmony.mesh.subjects import lease_bucket, lease_stream
from harmony.mesh.summaries import bucket_name as sites_bucket
from harmony.security.roster import Roster


@dataclass(frozen=True)
class UserPermissions:
    """One entry of the server's authorization block."""

    name: str
    """The site or identity (for humans: comments in the server config)."""
    role: str
    """"site", "operator" or "reader"."""
    nkey: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    allow_responses: bool
    publish_deny: tuple[str, ...] = ()
    """Subjects refused although `publish` allows them (an edge's JetStream inboxes)."""
    connection_types: tuple[str, ...] = ()
    """nats-server's ``allowed_connection_types`` ("STANDARD", "LEAFNODE"); () = any. Set
    on servers with a leafnode listener only (`with_connection_types`)."""


def site_inbox(mesh: str, site: str) -> str:
    """The inbox prefix of a site's connection (its replies and JetStream deliveries)."""
    return f"_INBOX.{mesh}.{site}"


def identity_inbox(mesh: str, name: str) -> str:
    return f"_INBOX.{mesh}.{subjects.OPERATOR}.{name}"


JS_INBOX = "_js"
"""The token under a connection's inbox where nats-py's own inboxes live (JetStream API
replies, KV watch deliveries); a name cannot start with ``_``, so no site or identity
inbox is mistaken for it."""


def js_inbox(inbox: str) -> str:
    """nats-py's inbox prefix of a connection whose inbox is `inbox` (see `JS_INBOX`)."""
    return f"{inbox}.{JS_INBOX}"


def lease_key(mesh: str, workload: str) -> str:
    return f"$KV.{lease_bucket(mesh, workload)}.{workload}"


def _lease_reads(mesh: str, workload: str) -> list[str]:
    stream = lease_stream(mesh, workload)
    return [
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
    ]


def _lease_watch(mesh: str, workload: str) -> list[str]:
    """What watching a lease needs beyond reads: an ordered consumer and its flow control."""
    stream = lease_stream(mesh, workload)
    return [
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.DELETE.{stream}.*",
        f"$JS.API.CONSUMER.INFO.{stream}.*",
        f"$JS.FC.{stream}.>",
        f"$JS.ACK.{stream}.>",
    ]


def _lease_write(mesh: str, workload: str) -> list[str]:
    """What a site of the workload's topology needs: bootstrap, the write of its key, and
    moving the stream's leader to the holder (`LeaseStore.lead`)."""
    stream = lease_stream(mesh, workload)
    return [
        lease_key(mesh, workload),
        f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}",
        f"$JS.API.STREAM.CREATE.{stream}",
    ]


def sites_bucket_rules(mesh: str, site: str | None) -> list[str]:
    """What the summaries need of the sites bucket: every user reads it (stream info, an
    ordered consumer: create, info, delete, flow control); a `site` also creates it and
    writes its own key, and no other."""
    stream = f"KV_{sites_bucket(mesh)}"
    rules = [
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.DELETE.{stream}.*",
        f"$JS.API.CONSUMER.INFO.{stream}.*",
        f"$JS.FC.{stream}.>",
    ]
    if site is not None:
        rules += [f"$JS.API.STREAM.CREATE.{stream}", f"$KV.{sites_bucket(mesh)}.{site}"]
    return rules


def prices_bucket_rules(mesh: str, site: str) -> list[str]:
    """The prices bucket (`harmony.mesh.prices`): a site reads every price with one ordered
    consumer, may create the bucket and writes its own key, and no other."""
    stream = f"KV_{prices_bucket(mesh)}"
    return [
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.DELETE.{stream}.*",
        f"$JS.API.CONSUMER.INFO.{stream}.*",
        f"$JS.FC.{stream}.>",
        f"$JS.API.STREAM.CREATE.{stream}",
        f"$KV.{prices_bucket(mesh)}.{site}",
    ]


CORES_KEY = "cores"
"""The key of the mesh's core list in `mesh_info_bucket` (see `harmony.mesh.mesh_info`)."""


def mesh_info_bucket(mesh: str) -> str:
    """The KV bucket of what a core-and-edge mesh's sites must agree on (its core list)."""
    return f"harmony-{mesh}-mesh"


def _mesh_info(mesh: str, core: bool) -> list[str]:
    """A site of a mesh that names its cores: read the core list; a core also creates the
    bucket and writes the list (once: create only, see `harmony.mesh.mesh_info`)."""
    bucket = mesh_info_bucket(mesh)
    stream = f"KV_{bucket}"
    reads = [
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
    ]
    if not core:
        return reads
    return [*reads, f"$JS.API.STREAM.CREATE.{stream}", f"$KV.{bucket}.{CORES_KEY}"]


def mesh_inboxes(mesh: str) -> str:
    """Every inbox of the mesh: where an edge's leaf link may send replies (but see
    `mesh_js_inboxes`)."""
    return f"_INBOX.{mesh}.>"


def mesh_js_inboxes(mesh: str) -> list[str]:
    """Every JetStream inbox of the mesh (sites' and identities'): an edge may not publish
    there, so its leaf link is never told their names either."""
    return [
        js_inbox(site_inbox(mesh, "*")) + ".>",
        js_inbox(identity_inbox(mesh, "*")) + ".>",
    ]


STANDARD = "STANDARD"
LEAFNODE = "LEAFNODE"


def with_connection_types(
    users: Sequence[UserPermissions], cores: Sequence[str]
) -> list[UserPermissions]:
    """`users` as a server with a leafnode listener has them: an edge's site user may
    connect as a client or open a leaf link, every other user as a client only."""
    out = []
    for u in users:
        edge = u.role == "site" and bool(cores) and u.name not in cores
        types = (STANDARD, LEAFNODE) if edge else (STANDARD,)
        out.append(replace(u, connection_types=types))
    return out


def lease_rules(
    mesh: str, read: Iterable[str], write: Iterable[str] = (), watch: bool = True
) -> list[str]:
    """JetStream's general info; for each workload of `read` its lease stream's reads (and,
    with `watch`, a watch); for each of `write` what a site of its topology needs besides."""
    rules = ["$JS.API.INFO"]
    for w in sorted(set(read) | set(write)):
        rules += _lease_reads(mesh, w) + (_lease_watch(mesh, w) if watch else [])
    for w in sorted(set(write)):
        rules += _lease_write(mesh, w)
    return rules


def site_permissions(
    mesh: str,
    site: str,
    nkey: str,
    lease_workloads: Iterable[str],
    edge: bool = False,
    roles: bool = False,
    known_leases: Iterable[str] = (),
) -> UserPermissions:
    """A site: its own subjects, the lease buckets of `lease_workloads` (the workloads whose
    topology names it; `harmony.mesh.leases.lease_bucket`), reads and watches of the lease
    buckets of `known_leases` (a site outside a topology watches it too); an `edge` also the mesh's
    inboxes (its replies cross a leaf link, see the module's docstring). `roles`: the mesh
    names its cores, whose list every site reads (and a core writes)."""
    publish = [
        subjects.heartbeat(mesh, site),
        subjects.events(mesh, site),
        subjects.snapshot(mesh, "*"),  # a site's admin may watch: `harmony status -c site`
        subjects.sent_by(mesh, site, subjects.TELL),
        subjects.sent_by(mesh, site, subjects.ASK),
        *lease_rules(mesh, known_leases, lease_workloads),
        *sites_bucket_rules(mesh, site),
        *prices_bucket_rules(mesh, site),
        *(_mesh_info(mesh, core=not edge) if roles else []),
        *([mesh_inboxes(mesh)] if edge else []),
    ]
    subscribe = [
        subjects.actor_wildcard(mesh, site, subjects.TELL),
        subjects.actor_wildcard(mesh, site, subjects.ASK),
        subjects.snapshot(mesh, site),
        subjects.snapshot_all(mesh),
        subjects.heartbeats(mesh),
        f"{site_inbox(mesh, site)}.>",
    ]
    deny = tuple(mesh_js_inboxes(mesh)) if edge else ()
    return UserPermissions(site, "site", nkey, tuple(publish), tuple(subscribe), True, deny)


def identity_permissions(
    mesh: str, name: str, nkey: str, role: str, lease_workloads: Iterable[str] = ()
) -> UserPermissions:
    """An operator (commands, snapshots, lease reads of `lease_workloads`) or a reader (the
    same without commands)."""
    publish = [subjects.snapshot(mesh, "*")]
    if role == "operator":
        publish[:0] = [
            subjects.sent_by(mesh, subjects.OPERATOR, subjects.TELL),
            subjects.sent_by(mesh, subjects.OPERATOR, subjects.ASK),
        ]
    elif role != "reader":
        raise ValueError(f"unknown role {role!r}")
    publish += lease_rules(mesh, lease_workloads, watch=False)
    publish += sites_bucket_rules(mesh, None)
    subscribe = [
        subjects.all_events(mesh),
        subjects.heartbeats(mesh),
        f"{identity_inbox(mesh, name)}.>",
    ]
    return UserPermissions(name, role, nkey, tuple(publish), tuple(subscribe), False)


def lease_scope(workloads: Iterable[tuple[str, Sequence[str]]]) -> dict[str, tuple[str, ...]]:
    """{site: workloads whose lease it may write} from (workload, topology sites) pairs."""
    scope: dict[str, set[str]] = {}
    for workload, sites in workloads:
        for site in sites:
            scope.setdefault(site, set()).add(workload)
    return {site: tuple(sorted(ws)) for site, ws in scope.items()}


def mesh_users(
    roster: Roster,
    leases: Mapping[str, Sequence[str]],
    cores: Sequence[str] = (),
) -> list[UserPermissions]:
    """Every user of the roster. `leases`: {site: workloads whose lease key it may write},
    as this server knows them (from its site's configuration; see `lease_scope`); `cores`:
    the mesh's core sites (none named: every site is a core), the other sites are edges."""
    mesh = roster.mesh
    every_lease = sorted({w for ws in leases.values() for w in ws})
    users = [
        site_permissions(
            mesh,
            site,
            key,
            leases.get(site, ()),
            edge=bool(cores) and site not in cores,
            roles=bool(cores),
            known_leases=every_lease,
        )
        for site, key in sorted(roster.sites.items())
    ]
    users += [
        identity_permissions(mesh, name, entry.nkey, entry.role, every_lease)
        for name, entry in sorted(roster.identities.items())
    ]
    return users
