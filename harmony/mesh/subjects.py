"""The subject scheme. Every subject starts with ``harmony.<mesh>.<site>``.

==============================================  ============================================
subject                                         carries
==============================================  ============================================
``harmony.<mesh>.<site>.tell.<path...>``        a frame of tells to the actor at `path`
``harmony.<mesh>.<site>.ask.<path...>``         one ask; the reply goes to the reply subject
``harmony.<mesh>.<site>.hb``                    the site's heartbeats
``harmony.<mesh>.<site>.snapshot``              request: that site's actor tree
``harmony.<mesh>._all.snapshot``                request to every site; each one answers
``harmony.<mesh>.<site>.event``                 the site's structured events
==============================================  ============================================

Actor paths are ``/``-separated names (``agent/workload/web/lease``); on the wire each name is
one subject token. Site and actor names can never be ``_all`` (names start with a letter or
digit), so the broadcast subjects cannot collide with a site.
"""

from __future__ import annotations

PREFIX = "harmony"
ALL = "_all"
TELL = "tell"
ASK = "ask"
VERBS = (TELL, ASK)


def actor(mesh: str, site: str, verb: str, path: str) -> str:
    return f"{PREFIX}.{mesh}.{site}.{verb}.{path.replace('/', '.')}"


def actor_wildcard(mesh: str, site: str, verb: str) -> str:
    return f"{PREFIX}.{mesh}.{site}.{verb}.>"


def actor_path(subject: str) -> str:
    """The actor path of a tell/ask subject (everything after the verb)."""
    parts = subject.split(".", 4)
    if len(parts) < 5 or parts[0] != PREFIX or parts[3] not in VERBS:
        raise ValueError(f"not an actor subject: {subject!r}")
    return parts[4].replace(".", "/")


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
