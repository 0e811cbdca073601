"""``horizontal``: `replicas` copies of one workload spread over the eligible live sites.

Each replica is a *slot* (0 .. replicas-1). `plan` is pure: from the spec, the state it
returned last time, the sites (`SiteFacts`, with their liveness), where each slot's copy
runs now, and `now`, it returns the moves to make, each with its reason.

* Per slot, `SLOT_RULES` (first match wins) says keep it, place it (not running), replace it
  (its site was lost), evict it (its site breaks a constraint: it stops even with nowhere
  to go) or shed it (its site is over capacity: moved only if another site has room). These
  moves are forced: they never wait for the disruption budget (a copy outside the
  constraints must go; a lost copy is already unavailable). Slots >= replicas are stopped.
* A new place goes to the spread domain (the value of `spread_label`; without one, each
  site is its own domain) with the lowest ``(copies + 1) / weight``, then to its site with
  the fewest copies. Sites without room, without the label, or with a weightless value are
  not used; when nothing fits, the slot stays down and a note says why.
* Rebalance: the skew is ``max(dev) - min(dev)`` with ``dev = copies - placed * weight /
  total weight`` (without weights: the Kubernetes skew, max copies - min copies), the
  minimum over domains with room. Only once the skew has exceeded `max_skew` for `settle`
  seconds (hysteresis), and only while fewer than `max_unavailable` slots are unavailable
  (not running, or moving), does one slot move from the most to the least loaded domain;
  moves stop as soon as the skew is within `max_skew`, so a heal never oscillates.

Composition with the failover strategies (the existing ones, unchanged): a slot is a
failover workload of its own. Slot i of workload ``w`` is the workload ``w--i``
(`slot_lease`: a name valid wherever a workload's is, in subjects and bucket names), with
a lease of its own, and the failover topology `slot_topology`: the site the plan gives it first,
then the other eligible sites (rotated by i, so slots fail over to different sites). The
wiring runs one strategy state machine per (workload, slot) on each eligible site, exactly
as it runs a failover workload today, and turns every `Move` into the operator-move path the
strategies already take (`MoveRequested(target)` to that slot's machines):
absolute-consistency stops the copy, releases ``w--i``, and the target, now first in the
slot's topology, acquires it; split-brain-allowed starts the new copy and the old one yields
to it. So "never two copies of one slot" is AbsoluteConsistency's proof applied per lease
key: the plan only decides preferences, never who may run — sites that disagree on the
plan (they see different liveness) can delay a move, never double a slot. Under
split-brain-allowed a move must also reach the sites cut off when it was made (a durable
move record, read again on heal), or the slot keeps two copies after the heal
(tests/strategies/test_horizontal_sba.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from harmony.strategies.labels import Constraint, SiteFacts, eligible
from harmony.strategies.tables import first_match
from harmony.strategies.topology import FailoverTopology


class MoveKind(StrEnum):
    PLACE = "place"  # the slot runs nowhere: start it
    REPLACE = "replace"  # its site was lost: start it elsewhere
    EVICT = "evict"  # its site breaks a constraint or has too many copies: move it now
    REBALANCE = "rebalance"  # voluntary, within the disruption budget


class SlotAct(StrEnum):
    KEEP = "keep"
    WAIT = "wait"  # a move of the slot is under way
    PLACE = MoveKind.PLACE.value
    REPLACE = MoveKind.REPLACE.value
    EVICT = MoveKind.EVICT.value
    SHED = "shed"  # over capacity: moved when another site has room, else kept


@dataclass(frozen=True, slots=True)
class SlotFacts:
    pending: bool  # a move of this slot was decided and has not completed
    arrived: bool  # its copy runs at the move's target
    running: bool  # the caller reports a copy of the slot on some site
    site_alive: bool
    site_eligible: bool  # meets every constraint (and has the spread label, if one is set)
    crowded: bool  # its site runs more copies of the workload than its capacity


SLOT_RULES: Final[tuple[tuple[Callable[[SlotFacts], bool], SlotAct, str], ...]] = (
    # when                              act              why
    (lambda f: f.pending and f.arrived, SlotAct.KEEP, "the move is done"),
    (lambda f: f.pending, SlotAct.WAIT, "moving"),
    (lambda f: not f.running, SlotAct.PLACE, "not running"),
    (lambda f: not f.site_alive, SlotAct.REPLACE, "its site was lost"),
    (lambda f: not f.site_eligible, SlotAct.EVICT, "its site is not eligible"),
    (lambda f: f.crowded, SlotAct.SHED, "its site runs more copies than its capacity"),
    (lambda f: True, SlotAct.KEEP, "running on an eligible live site"),
)


@dataclass(frozen=True, slots=True)
class HorizontalSpec:
    replicas: int
    spread_label: str | None = None  # None: every site is a domain of its own
    max_skew: int = 1
    weights: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    max_unavailable: int = 1
    settle: float = 30.0  # an imbalance must last this long before a rebalance
    move_timeout: float = 300.0  # a move not done by then is given up (and planned afresh)
    constraints: tuple[Constraint, ...] = ()

    def __post_init__(self) -> None:
        if self.replicas < 0 or self.max_skew < 1 or self.max_unavailable < 1:
            raise ValueError("replicas >= 0, max_skew >= 1 and max_unavailable >= 1")
        if any(w <= 0 for w in self.weights.values()):
            raise ValueError("spread weights must be > 0 (leave a value out to exclude it)")


@dataclass(frozen=True, slots=True)
class Move:
    """Move `slot` from `source` (None: it runs nowhere) to `target` (None: only stop it)."""

    slot: int
    source: str | None
    target: str | None
    kind: MoveKind
    reason: str


@dataclass(frozen=True, slots=True)
class Pending:
    target: str
    kind: MoveKind
    since: float


@dataclass(frozen=True, slots=True)
class HorizontalState:
    pending: Mapping[int, Pending] = field(default_factory=lambda: MappingProxyType({}))
    imbalanced_since: float | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    state: HorizontalState
    moves: tuple[Move, ...]
    placement: Mapping[int, str]  # slot -> where it runs, or is going
    notes: tuple[str, ...]  # why fewer than `replicas` run, why a rebalance waits
    wake_at: float | None  # call `plan` again then, even without news


def domain_of(spec: HorizontalSpec, site: SiteFacts) -> str:
    return site.name if spec.spread_label is None else site.labels[spec.spread_label]


def weight_of(spec: HorizontalSpec, domain: str) -> float:
    return spec.weights.get(domain, 1.0) if spec.weights else 1.0


def usable(
    spec: HorizontalSpec, sites: Iterable[SiteFacts]
) -> tuple[tuple[SiteFacts, ...], Mapping[str, str]]:
    """The sites the spec may use (constraints, spread label, weights), and why not the rest."""
    kept, excluded = eligible(sites, spec.constraints)
    out: list[SiteFacts] = []
    why = dict(excluded)
    label = spec.spread_label
    for s in kept:
        if label is not None and label not in s.labels:
            why[s.name] = f"site {s.name} has no label {label!r} to spread over"
        elif label is not None and spec.weights and s.labels[label] not in spec.weights:
            why[s.name] = f"site {s.name}: {label}={s.labels[label]!r} has no spread weight"
        else:
            out.append(s)
    return tuple(out), MappingProxyType(why)


class _Loads:
    """Copies per site and per domain over the usable live sites, as the plan builds up."""

    def __init__(self, spec: HorizontalSpec, sites: Sequence[SiteFacts]) -> None:
        self.spec = spec
        self.sites = {s.name: s for s in sites}
        self.per_site: Counter[str] = Counter()
        self.per_domain: Counter[str] = Counter({domain_of(spec, s): 0 for s in sites})

    def add(self, site: str, n: int = 1) -> None:
        self.per_site[site] += n
        self.per_domain[domain_of(self.spec, self.sites[site])] += n

    def room(self, site: str) -> int:
        return self.sites[site].capacity - self.per_site[site]

    def domain_room(self, domain: str) -> bool:
        return any(self.room(n) > 0 for n, s in self.sites.items() if self._dom(s) == domain)

    def _dom(self, s: SiteFacts) -> str:
        return domain_of(self.spec, s)

    def deviations(self) -> dict[str, float]:
        placed = sum(self.per_domain.values())
        total = sum(weight_of(self.spec, d) for d in self.per_domain)
        return {d: c - placed * weight_of(self.spec, d) / total for d, c in self.per_domain.items()}

    def skew(self) -> float:
        dev = self.deviations()
        open_ = [v for d, v in dev.items() if self.domain_room(d)]
        return max(dev.values()) - min(open_) if open_ else 0.0

    def best_site(self, exclude_domain: str | None = None) -> str | None:
        """Where the next copy goes: the domain with the lowest (copies + 1) / weight, then
        its site with the fewest copies, the most room, the smallest name."""
        open_ = [
            s for n, s in self.sites.items() if self.room(n) > 0 and self._dom(s) != exclude_domain
        ]
        if not open_:
            return None

        def key(s: SiteFacts) -> tuple[float, str, int, int, str]:
            d = self._dom(s)
            share = (self.per_domain[d] + 1) / weight_of(self.spec, d)
            return (share, d, self.per_site[s.name], -self.room(s.name), s.name)

        return min(open_, key=key).name


def plan(
    spec: HorizontalSpec,
    state: HorizontalState,
    sites: Sequence[SiteFacts],
    current: Mapping[int, str],
    now: float,
) -> Plan:
    """The moves that bring `current` (slot -> site its copy runs on) toward the spec."""
    ok, excluded = usable(spec, sites)
    live = tuple(s for s in ok if s.alive)
    alive = {s.name for s in sites if s.alive}
    loads = _Loads(spec, live)
    notes: list[str] = []
    moves: list[Move] = []
    pending: dict[int, Pending] = {}
    placement: dict[int, str] = {}
    todo: list[tuple[int, SlotAct, str]] = []

    # a slot's copies in excess of its site's capacity: the highest slots go first
    seen: Counter[str] = Counter()
    crowded: set[int] = set()
    for slot in sorted(current):
        host = current[slot]
        if slot < spec.replicas and host in loads.sites:
            seen[host] += 1
            if seen[host] > loads.sites[host].capacity:
                crowded.add(slot)

    for slot in range(spec.replicas):
        site = current.get(slot)
        move = state.pending.get(slot)
        if move is not None and move.target not in loads.sites:
            notes.append(f"slot {slot}: the move to {move.target} was given up (site gone)")
            move = None
        elif move is not None and site != move.target and now >= move.since + spec.move_timeout:
            notes.append(f"slot {slot}: the move to {move.target} was given up (timed out)")
            move = None
        facts = SlotFacts(
            pending=move is not None,
            arrived=move is not None and site == move.target,
            running=site is not None,
            site_alive=site in alive,
            site_eligible=site in loads.sites,
            crowded=slot in crowded,
        )
        act, why = first_match(SLOT_RULES, facts)
        if act is SlotAct.KEEP:
            assert site is not None
            loads.add(site)
            placement[slot] = site
        elif act is SlotAct.WAIT:
            assert move is not None
            loads.add(move.target)
            placement[slot] = move.target
            pending[slot] = move
        else:
            if act is SlotAct.EVICT and site is not None and site in excluded:
                why = excluded[site]
            todo.append((slot, act, why))

    for slot, act, why in todo:  # forced moves: no budget
        source = current.get(slot)
        target = loads.best_site()
        kind = MoveKind.EVICT if act is SlotAct.SHED else MoveKind(act.value)
        if target is None and act is SlotAct.SHED and source is not None:
            notes.append(f"slot {slot}: {why}, but no other usable live site has room: kept")
            loads.add(source)
            placement[slot] = source
            continue
        if target is None:
            short = f"slot {slot}: {why}; no usable live site has room"
            notes.append(short)
            if act is SlotAct.EVICT:  # outside the constraints: stop it even so
                moves.append(Move(slot, source, None, kind, short))
            continue
        loads.add(target)
        placement[slot] = target
        pending[slot] = Pending(target, kind, now)
        moves.append(Move(slot, source, target, kind, f"slot {slot}: {why}; {kind} on {target}"))

    for slot in sorted(s for s in current if s >= spec.replicas):
        why = f"slot {slot} >= replicas {spec.replicas}: stop it"
        moves.append(Move(slot, current[slot], None, MoveKind.EVICT, why))

    if len(placement) < spec.replicas:
        room = sum(s.capacity for s in live)
        notes.append(
            f"{len(placement)} of {spec.replicas} replicas placed: {len(live)} usable live "
            f"sites with room for {room}"
            + (f"; excluded: {'; '.join(excluded.values())}" if excluded else "")
        )

    state, more, wake = _rebalance(spec, state, loads, current, pending, placement, now, notes)
    moves += more
    state = replace(state, pending=MappingProxyType(pending))
    timeouts = [m.since + spec.move_timeout for m in pending.values()]
    wake = min((t for t in (wake, *timeouts) if t is not None and t > now), default=None)
    return Plan(state, tuple(moves), MappingProxyType(placement), tuple(notes), wake)


def _rebalance(
    spec: HorizontalSpec,
    state: HorizontalState,
    loads: _Loads,
    current: Mapping[int, str],
    pending: dict[int, Pending],
    placement: dict[int, str],
    now: float,
    notes: list[str],
) -> tuple[HorizontalState, list[Move], float | None]:
    skew = loads.skew()
    if skew <= spec.max_skew:
        return replace(state, imbalanced_since=None), [], None
    since = state.imbalanced_since if state.imbalanced_since is not None else now
    state = replace(state, imbalanced_since=since)
    if now < since + spec.settle:
        # No clock time in a note: it is shown to people (and journaled when it changes).
        notes.append(f"skew {skew:g} > {spec.max_skew}: rebalance once it lasts {spec.settle:g} s")
        return state, [], since + spec.settle
    unavailable = spec.replicas - sum(
        1 for s in range(spec.replicas) if s in current and s not in pending
    )
    moves: list[Move] = []
    while loads.skew() > spec.max_skew:
        if unavailable >= spec.max_unavailable:
            notes.append(
                f"skew {loads.skew():g} > {spec.max_skew}: {unavailable} slots unavailable, "
                f"max_unavailable {spec.max_unavailable}: the rest of the rebalance waits"
            )
            break
        dev = loads.deviations()
        movable = [s for s in placement if s not in pending and current.get(s) == placement[s]]
        donors = sorted(
            movable, key=lambda s: (dev[_domain_at(loads, placement[s])], s), reverse=True
        )
        if not donors:
            break
        slot = donors[0]
        source = placement[slot]
        donor = _domain_at(loads, source)
        target = loads.best_site(exclude_domain=donor)
        if target is None or dev[_domain_at(loads, target)] + 1 >= dev[donor]:
            break  # moving would not lower the skew
        loads.add(source, -1)
        loads.add(target)
        placement[slot] = target
        pending[slot] = Pending(target, MoveKind.REBALANCE, now)
        unavailable += 1
        why = f"slot {slot}: skew {skew:g} > max_skew {spec.max_skew} for {now - since:g} s"
        moves.append(Move(slot, source, target, MoveKind.REBALANCE, f"{why}: {donor} -> {target}"))
    return state, moves, None


def _domain_at(loads: _Loads, site: str) -> str:
    return domain_of(loads.spec, loads.sites[site])


SLOT_SEP: Final = "--"
"""Between a horizontal workload's name and a slot number: ``web--0``. Workload names
ending in ``--<digits>`` are reserved for slots (`harmony.config.slots`)."""


def slot_lease(workload: str, slot: int) -> str:
    """The name of one slot's workload, and so of its lease key: every slot is protected by
    a lease of its own."""
    return f"{workload}{SLOT_SEP}{slot}"


def slot_of(name: str) -> tuple[str, int] | None:
    """(workload, slot) of a slot's name, or None for a name that is not a slot's."""
    base, sep, num = name.rpartition(SLOT_SEP)
    if not (sep and base and num.isdigit() and num == str(int(num))):
        return None
    return base, int(num)


def slot_topology(
    slot: int, site: str | None, eligible_sites: Sequence[str], warm: bool = False
) -> FailoverTopology | None:
    """The failover topology a slot's strategy runs under: the planned site first, then
    the other eligible sites rotated by the slot number. None: no eligible site."""
    if not eligible_sites:
        return None
    k = slot % len(eligible_sites)
    order = [*eligible_sites[k:], *eligible_sites[:k]]
    if site is not None and site in order:
        order.remove(site)
        order.insert(0, site)
    return FailoverTopology(order[0], tuple(order[1:]), warm)
