"""The export list: what another site, or an operator, may reach on this site over the wire.

The sender is the `<from>` token of the subject (`harmony.<mesh>.<to>.<verb>.<from>.<path>`),
which the NATS server vouches for (a site's credential may publish only with its own name
there, the operator role only with `_op`); never a field of the message. The bridge asks this
policy before anything reaches an actor:

    sender kind    a configured site other than this one -> `site`; `_op` -> `operator`;
                   anything else (an unknown name, this site's own name) is refused
    path           an actor there? (else `unknown-actor`) exported to that kind at all?
                   (else `not-exported`)
    message type   exported for that kind at that path? (else `not-exported`)
    content        clamped or refused where it steers the agent (a probe of this site
                   itself, its timeout; the origin of a forwarded move, the sender of a note)

Run and lease actors are local only: their commands come from this site's own workload
supervisor. The one exception is `GetOutput` to a run actor, a read the operator's TUI
makes (moving it to the supervisor would make the run actor wholly local).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import msgspec

from harmony.actors import messages as m
from harmony.config import ROSTER_FILE, ConfigError, SiteConfig
from harmony.mesh import subjects, wire
from harmony.mesh.remote import Refused
from harmony.security.roster import load_roster

SITE = "site"
"""The sender kind of another configured site of this mesh."""
OPERATOR = "operator"
"""The sender kind of an operator's tools (TUI, `harmony` commands, the simulator)."""

MessageTypes = tuple[type[wire.Message], ...]

EXPORTS: tuple[tuple[str, Mapping[str, MessageTypes]], ...] = (
    # The root: an operator drains the site.
    ("agent", {OPERATOR: (m.DrainSite,)}),
    # Diagnostics. Sites ping each other (probes) and leave notes; an operator may ping,
    # ask for a probe or a note, and read the notes.
    (
        "agent/site",
        {
            SITE: (m.Ping, m.Notice),
            OPERATOR: (m.Ping, m.Notice, m.ProbePeer, m.SendNotice, m.GetNotices),
        },
    ),
    # A workload's supervisor: operator commands; a site of the workload's topology
    # forwards an operator's move (workload_supervisor.py) so that every site prefers the
    # new target.
    (
        "agent/workload/*",
        {
            SITE: (m.MoveWorkload,),
            OPERATOR: (m.StartWorkload, m.StopWorkload, m.FenceWorkload, m.MoveWorkload),
        },
    ),
    # The run actor is local only, but for the TUI's read of a copy's output.
    ("agent/workload/*/run", {OPERATOR: (m.GetOutput,)}),
    # Not listed, so nobody else reaches them: agent/peers (heartbeats come on their own
    # subject), agent/workload/*/lease.
)


def mesh_sites(cfg: SiteConfig) -> frozenset[str]:
    """The sites this site knows to be of its mesh: itself, its mesh's cores (if named),
    every site of its workloads' topologies and, on a secure mesh, every site of the roster
    (witnesses included: their configurations name no other site)."""
    sites = {cfg.site, *cfg.nats.cores}
    for w in cfg.workloads:
        sites.update((w.topology.primary, *w.topology.standbys))
    sec = cfg.security
    if sec is not None and sec.dir:
        with contextlib.suppress(ConfigError):  # the agent refuses it elsewhere
            sites.update(load_roster(Path(sec.dir) / ROSTER_FILE).sites)
    return frozenset(sites)


def _topology_sites(cfg: SiteConfig) -> dict[str, frozenset[str]]:
    return {w.name: frozenset((w.topology.primary, *w.topology.standbys)) for w in cfg.workloads}


class ExportPolicy:
    """The bridge's policy (`harmony.mesh.remote.WirePolicy`) for one site's agent."""

    def __init__(
        self,
        cfg: SiteConfig,
        sites: Iterable[str] = (),
        exports: tuple[tuple[str, Mapping[str, MessageTypes]], ...] = EXPORTS,
    ) -> None:
        """`sites`: more sites of this mesh than its configuration names (a roster)."""
        self.site = cfg.site
        self.ask_timeout = cfg.timings.ask_timeout
        self.sites = (mesh_sites(cfg) | frozenset(sites)) - {cfg.site}
        self.topologies = _topology_sites(cfg)
        self.exports = exports

    def sender_kind(self, sender: str) -> str | None:
        if sender == subjects.OPERATOR:
            return OPERATOR
        return SITE if sender in self.sites else None

    def _types(self, kind: str, path: str) -> MessageTypes:
        found: MessageTypes = ()
        for pattern, by_kind in self.exports:
            if _matches(pattern, path):
                found += by_kind.get(kind, ())
        return found

    def exported(self, kind: str, path: str) -> bool:
        return bool(self._types(kind, path))

    def admit(self, sender: str, kind: str, path: str, message: wire.Message) -> wire.Message:
        """The message as the actor may see it, or `Refused`."""
        if not isinstance(message, self._types(kind, path)):
            raise Refused(
                wire.ERR_NOT_EXPORTED,
                f"{type(message).__name__} to {path} is not accepted from a {kind} ({sender})",
            )
        match message:
            case m.ProbePeer():
                if message.target == self.site:
                    raise Refused(wire.ERR_INVALID, f"{self.site} does not probe itself")
                if message.timeout > self.ask_timeout:
                    return msgspec.structs.replace(message, timeout=self.ask_timeout)
            case m.Notice() if message.sender != sender:
                return msgspec.structs.replace(message, sender=sender)
            case m.MoveWorkload() if kind == SITE:
                workload = path.rsplit("/", 1)[-1]
                if sender not in self.topologies.get(workload, frozenset()):
                    raise Refused(
                        wire.ERR_NOT_EXPORTED, f"{sender} is not a site of {workload}'s topology"
                    )
                if message.origin != sender:  # a forward is never forwarded again
                    return msgspec.structs.replace(message, origin=sender)
        return message


def _matches(pattern: str, path: str) -> bool:
    """`*` stands for one path segment (a workload name), never for a `/`."""
    parts, want = path.split("/"), pattern.split("/")
    return len(parts) == len(want) and all(
        w == "*" or p == w for p, w in zip(parts, want, strict=True)
    )
