"""``geo``: label constraints applied to any topology; no copy ever runs outside them.

Constraints narrow the sites before a topology decides anything, so every topology obeys
them by construction rather than by checks of its own:

* failover: `failover_within` drops the standbys (and the primary) the constraints exclude;
  the strategies then never see an excluded site, so neither a failover nor a lease race
  can put a copy there;
* horizontal and cost choose among `eligible` sites only (`horizontal.plan`, `cost.decide`);
* an operator's move is checked first by `move_refusal`, which names the constraint;
* `GEO_RULES` says whether the workload can run at all, and why not (no eligible site alive:
  it stays down, and status says so);
* sites must agree on a workload's constraints (`disagreement`): one that reads other
  constraints than a peer refuses the workload, so a config change on one site cannot
  widen where it runs.

At run time (`admit`, called by the workload supervisor whenever what it knows of the
sites changes) `ADMIT_RULES` say whether *this* site may run the workload; the answer
reaches the failover strategies as `events.SitesBarred`: a barred site never takes the
lease (absolute-consistency) and never runs a copy (split-brain-allowed), whatever its rank,
and barred peers are skipped when the others rank themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from harmony.strategies.labels import Constraint, SiteFacts, constraints_digest, eligible
from harmony.strategies.tables import first_match
from harmony.strategies.topology import FailoverTopology


class Verdict(StrEnum):
    RUN = "run"  # at least one eligible site is alive
    DOWN = "down"  # eligible sites exist, none alive: wait for one, start nothing elsewhere
    NOWHERE = "nowhere"  # no known site meets the constraints: a config error


@dataclass(frozen=True, slots=True)
class GeoFacts:
    eligible: int  # known sites meeting every constraint
    alive: int  # of those, alive


GEO_RULES: Final[tuple[tuple[Callable[[GeoFacts], bool], Verdict, str], ...]] = (
    # when                        verdict          why
    (lambda f: f.eligible == 0, Verdict.NOWHERE, "no site meets the constraints"),
    (lambda f: f.alive == 0, Verdict.DOWN, "no eligible site is alive: the workload stays down"),
    (lambda f: True, Verdict.RUN, "eligible sites are alive"),
)


@dataclass(frozen=True, slots=True)
class GeoDecision:
    verdict: Verdict
    reason: str
    sites: tuple[str, ...]  # eligible and alive, in the given order
    excluded: Mapping[str, str]  # site -> the constraint it breaks


def where(sites: Iterable[SiteFacts], constraints: Iterable[Constraint]) -> GeoDecision:
    """Where a workload under `constraints` may run now, and, if nowhere, why."""
    kept, excluded = eligible(sites, constraints)
    alive = tuple(s.name for s in kept if s.alive)
    verdict, why = first_match(GEO_RULES, GeoFacts(len(kept), len(alive)))
    if verdict is not Verdict.RUN and excluded:
        why = f"{why} ({'; '.join(excluded.values())})"
    return GeoDecision(verdict, why, alive, excluded)


@dataclass(frozen=True, slots=True)
class GeoFailover:
    """A failover topology cut down to the eligible sites; None: no eligible site at all."""

    topology: FailoverTopology | None
    excluded: Mapping[str, str]
    reason: str


def failover_within(
    topology: FailoverTopology, sites: Sequence[SiteFacts], constraints: Iterable[Constraint]
) -> GeoFailover:
    """`topology` without the sites the constraints exclude (order kept: the first eligible
    site becomes the primary). A site of the topology that `sites` does not describe is
    excluded too: nothing is known of its labels."""
    facts = {s.name: s for s in sites}
    known = [facts.get(name, SiteFacts(name)) for name in topology.sites]
    kept, excluded = eligible(known, constraints)
    names = tuple(s.name for s in kept)
    if not names:
        return GeoFailover(None, excluded, "no site of the topology meets the constraints")
    cut = FailoverTopology(names[0], names[1:], topology.warm)
    if not excluded:
        return GeoFailover(cut, excluded, "every site of the topology meets the constraints")
    return GeoFailover(cut, excluded, f"standbys filtered: {'; '.join(excluded.values())}")


def move_refusal(
    target: str, sites: Iterable[SiteFacts], constraints: Iterable[Constraint]
) -> str | None:
    """Why a move of the workload to `target` is refused (naming the constraint), or None."""
    site = next((s for s in sites if s.name == target), None)
    if site is None:
        return f"move to {target} refused: no such site is known"
    for c in constraints:
        why = c.why_not(site)
        if why is not None:
            return f"move to {target} refused: {why}"
    return None


def disagreement(
    own: Iterable[Constraint], peers: Mapping[str, Iterable[Constraint]]
) -> str | None:
    """Why the workload is refused because a peer reads other constraints (compared by
    meaning: order, spacing and quoting aside), or None when every peer agrees with us."""
    mine = sorted(c.canonical for c in own)
    differ = sorted(site for site, cs in peers.items() if sorted(c.canonical for c in cs) != mine)
    if not differ:
        return None
    return f"constraints differ on {', '.join(differ)}: refusing the workload until they agree"


# -- at run time: may this site run the workload? -------------------------------------------
class Admit(StrEnum):
    RUN = "run"  # this site meets the constraints
    OUTSIDE = "outside"  # it does not; an eligible site is alive and runs the workload
    DOWN = "down"  # it does not, and no eligible site is alive: the workload stays down
    REFUSED = "refused"  # sites read different constraints: refused until they agree


@dataclass(frozen=True, slots=True)
class AdmitFacts:
    disagree: bool  # a site of the topology announced other constraints than ours
    outside: bool  # this site's own labels break a constraint
    eligible_alive: int  # sites known to meet the constraints and known to be alive


ADMIT_RULES: Final[tuple[tuple[Callable[[AdmitFacts], bool], Admit, str], ...]] = (
    # when                                         verdict         why
    (lambda f: f.disagree, Admit.REFUSED, "sites disagree on the workload's constraints"),
    (
        lambda f: f.outside and f.eligible_alive == 0,
        Admit.DOWN,
        "no eligible site is alive: the workload stays down",
    ),
    (lambda f: f.outside, Admit.OUTSIDE, "outside the constraints: eligible sites run it"),
    (lambda f: True, Admit.RUN, "this site meets the constraints"),
)


@dataclass(frozen=True, slots=True)
class Admission:
    verdict: Admit
    reason: str
    barred: Mapping[str, str]
    """Sites of the topology that never run the workload (this one too unless RUN) -> why."""


def admit(
    site: str,
    topology: Sequence[str],
    facts: Mapping[str, SiteFacts],
    constraints: Sequence[Constraint],
    digests: Mapping[str, str],
) -> Admission:
    """Whether `site` may run the workload, and which sites of `topology` may not.

    `facts`: what sites said of themselves (labels; `alive` as this site sees them), this
    site's own included. A site of the topology missing from `facts` was never heard: its
    labels are unknown, so it is not barred (the others defer to it, as to an unknown peer)
    and not counted alive. `digests`: site -> `constraints_digest` of the constraints it
    announced for this workload (a site that announced none is not compared).
    """
    mine = constraints_digest(constraints)
    differ = sorted(s for s in topology if s != site and digests.get(s, mine) != mine)
    known = [facts[s] for s in topology if s in facts]
    if site not in facts:
        known.append(SiteFacts(site))
    kept, excluded = eligible(known, constraints)
    alive = sum(1 for s in kept if s.alive)
    verdict, why = first_match(ADMIT_RULES, AdmitFacts(bool(differ), site in excluded, alive))
    if differ:
        why = f"{why}: constraints differ on {', '.join(differ)}; refused until they agree"
    elif site in excluded:
        why = f"{why} ({excluded[site]})"
    barred = {s: w for s, w in excluded.items() if s != site}
    if verdict is not Admit.RUN:
        barred[site] = why
    return Admission(verdict, why, MappingProxyType(barred))
