"""Site roles of a core-and-edge mesh: the rules one site's configuration must follow.

A mesh whose sites name no `cores` is all-core, as it always was: every site's server is a
JetStream server routed to every other. A mesh that names its cores (``[nats] cores``, the
same list on every site) has a small clustered core (3, 5 or 7 sites) holding the lease
bucket, and edges: sites whose server is a leaf node of the core (no JetStream, no vote),
connected to several core servers' leafnode ports (``leaf_remotes``).

Pure and stdlib-only (a leaf of the layers): `role_problem` returns (field, reason) of the
first mistake, and `harmony.config` raises it as a `ConfigError` naming the file. Whether
two sites' core lists agree is checked at join (`harmony.actors.runtime`), not here: one
file cannot see another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol
from urllib.parse import urlsplit

CORE = "core"
EDGE = "edge"
LEAF_SCHEMES = ("nats-leaf", "nats", "tls")
"""URL schemes nats-server accepts for a leafnode remote."""


def lease_replicas(cores: Sequence[str]) -> int:
    """Replicas of the lease bucket in a mesh with these cores: R3, or fewer cores."""
    return max(1, min(3, len(cores)))


class NatsRoleFields(Protocol):
    """The fields of ``[nats]`` (`harmony.config.NatsConfig`) a role depends on."""

    @property
    def mode(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def cores(self) -> Sequence[str]: ...
    @property
    def routes(self) -> Sequence[str]: ...
    @property
    def leaf_remotes(self) -> Sequence[str]: ...


def role_problem(
    site: str, nats: NatsRoleFields, *, witness: bool, valid_name: Callable[[str], object]
) -> tuple[str, str] | None:
    """(field, reason) of the first role mistake of a site's configuration, or None;
    `valid_name` says whether a string is a valid site name."""
    role, cores, routes, leaf_remotes = nats.role, nats.cores, nats.routes, nats.leaf_remotes
    embedded = nats.mode == "embedded"
    for j, core in enumerate(cores):
        if not valid_name(core):
            return f"nats.cores[{j}]", f"{core!r} is not a valid site name"
    listed = ", ".join(cores)
    if len(set(cores)) != len(cores):
        dup = next(c for c in cores if list(cores).count(c) > 1)
        return "nats.cores", f"{dup!r} is listed twice"
    if cores and len(cores) % 2 == 0:
        return "nats.cores", (
            f"an even number of cores ({len(cores)}: {listed}): the core is one Raft group, "
            f"and {len(cores)} cores survive no more failures than {len(cores) - 1}; use 3, 5 "
            "or 7"
        )
    if role == EDGE:
        if not cores:
            return "nats.cores", (
                "an edge needs the mesh's core sites (the same list on every site), e.g. "
                'cores = ["a", "b", "c"]'
            )
        if len(cores) < 3:
            return "nats.cores", (
                f"{len(cores)} core ({listed}) for a mesh with edges: the core must survive a "
                "core site's loss while edges depend on it; use 3, 5 or 7"
            )
        if site in cores:
            return "nats.role", f"site {site!r} is an edge but nats.cores lists it as a core"
        if witness:
            return "witness", "a witness is a core site (it votes); an edge has no vote"
        if embedded and not leaf_remotes:
            return "nats.leaf_remotes", (
                "an edge needs the leafnode URLs of core servers (several, so that losing "
                "one core site does not cut it off), e.g. nats-leaf://core-a:7422"
            )
        if embedded and routes:
            return "nats.routes", "an edge has no routes: its server is a leaf node of the core"
    else:
        if cores and site not in cores:
            return "nats.cores", (
                f"site {site!r} is a core (nats.role) but not in nats.cores ({listed}); "
                'add it, or set role = "edge"'
            )
        if leaf_remotes:
            return "nats.leaf_remotes", "only an edge connects to the core as a leaf node"
    for i, url in enumerate(leaf_remotes):
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in LEAF_SCHEMES or not parts.hostname or not port:
            return f"nats.leaf_remotes[{i}]", f"{url!r} is not a nats-leaf://host:port URL"
    return None
