"""The subject scheme. Every subject starts with ``harmony.<mesh>.<site>``.

==============================================  ============================================
subject                                         carries
==============================================  ============================================
``harmony.<mesh>.<site>.tell.<from>.<path...>`` a frame of tells to the actor at `path`
``harmony.<mesh>.<site>.ask.<from>.<path...>``  one ask; the reply goes to the reply subject
``harmony.<mesh>.<site>.hb``                    the site's heartbeats
``harmony.<mesh>.<site>.snapshot``              request: that site's actor tree
``harmony.<mesh>._all.snapshot``                request to every site; each one answers
``harmony.<mesh>.<site>.event``                 the site's structured events
==============================================  ============================================

`<from>` is the sender: a site's name, or `OPERATOR` for an operator's tools. It is in the
subject, not in the message, so that the NATS server vouches for it: a site's credential may
publish only with its own name there, and only the operator role with `OPERATOR` (see
`harmony.security.permissions`). The receiving bridge decides by it what the sender may reach.

Actor paths are ``/``-separated names (``agent/workload/web/lease``); on the wire each name is
one subject token. Site and actor names can never be ``_all`` or ``_op`` (names start with a
letter or digit), so the broadcast subjects and the operator cannot collide with a site.
"""

from __future__ import annotations

PREFIX = "harmony"
ALL = "_all"
OPERATOR = "_op"
"""The sender of what an operator's tools (TUI, `harmony` commands, the simulator) send."""
TELL = "tell"
ASK = "ask"
VERBS = (TELL, ASK)


def actor(mesh: str, site: str, verb: str, sender: str, path: str) -> str:
    """The subject to reach the actor at `path` on `site`, sent by `sender`."""
    return f"{PREFIX}.{mesh}.{site}.{verb}.{sender}.{path.replace('/', '.')}"


def actor_wildcard(mesh: str, site: str, verb: str) -> str:
    return f"{PREFIX}.{mesh}.{site}.{verb}.>"


def sent_by(mesh: str, sender: str, verb: str) -> str:
    """Every actor subject `sender` may publish with `verb`, on any site (a permission)."""
    return f"{PREFIX}.{mesh}.*.{verb}.{sender}.>"


def actor_target(subject: str) -> tuple[str, str]:
    """(sender, actor path) of a tell/ask subject."""
    parts = subject.split(".", 5)
    if len(parts) < 6 or parts[0] != PREFIX or parts[3] not in VERBS or not parts[4]:
        raise ValueError(f"not an actor subject: {subject!r}")
    return parts[4], parts[5].replace(".", "/")


def actor_path(subject: str) -> str:
    """The actor path of a tell/ask subject (everything after the sender)."""
    return actor_target(subject)[1]


def heartbeat(mesh: str, site: str) -> str:
    return f"{PREFIX}.{mesh}.{site}.hb"


def heartbeats(mesh: str) -> str:
    return f"{PREFIX}.{mesh}.*.hb"


def snapshot(mesh: str, site: str) -> str:
    return f"{PREFIX}.{mesh}.{site}.snapshot"


def snapshot_all(mesh: str) -> str:
    return f"{PREFIX}.{mesh}.{ALL}.snapshot"


def events(mesh: str, site: str) -> str:
    return f"{PREFIX}.{mesh}.{site}.event"


def all_events(mesh: str) -> str:
    return f"{PREFIX}.{mesh}.*.event"


def lease_bucket(mesh: str, workload: str) -> str:
    """The KV bucket holding an exclusive `workload`'s lease (its key: the workload's name);
    one per workload, so that its stream's leader can follow its holder (`mesh.leases`)."""
    return f"harmony-{mesh}-lease-{workload}"


def lease_stream(mesh: str, workload: str) -> str:
    """The JetStream stream behind `lease_bucket`."""
    return f"KV_{lease_bucket(mesh, workload)}"
