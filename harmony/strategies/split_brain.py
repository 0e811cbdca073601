"""SplitBrainAllowed (AP): keep a copy running on every live side; reconcile when sides meet.

* The first live site of the topology runs the copy: the primary, or, when every site before
  it is silent, a standby, which starts a replacement at once (no lease, token None).
* A site does not start a copy while a live peer runs one (no automatic failback), nor before
  it has seen the mesh's copies once (or `sync_grace` passed since boot).
* When more than one live copy is seen, the named policy in `tables.RECONCILE_KEYS` picks the
  survivor; every other site stops its copy and records the divergence. The policy orders
  copies totally (ties by topology rank), so sites that see the same copies agree, and the
  overall winner never stops: after a heal exactly one copy remains.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import get_args

from harmony.strategies import events as ev
from harmony.strategies.base import COMMON_FOLDS, FailoverStrategy
from harmony.strategies.commands import Command, RecordDivergence, RecordEvent
from harmony.strategies.state import WorkloadState
from harmony.strategies.tables import (
    RECONCILE_KEYS,
    SBA_GOALS,
    WORKLOAD_ACTIONS,
    Phase,
    SbaFacts,
    first_match,
)

replace = dataclasses.replace


class SplitBrainAllowed(FailoverStrategy):
    """Availability first: replacements on silence, a named reconcile policy on heal."""

    name = "split-brain-allowed"
    abbreviation = "SBA"
    announces_copies = True

    # -- events (the rows of `folds`, below the class) ------------------------------------
    def _copies_seen(
        self, state: WorkloadState, event: ev.PeerCopiesSeen, now: float, out: list[Command]
    ) -> WorkloadState:
        return replace(state, copies=event.copies, synced=True)

    def _healed(
        self, state: WorkloadState, event: ev.PartitionHealed, now: float, out: list[Command]
    ) -> WorkloadState:
        sites = ", ".join(event.sites) or "peers"
        out.append(RecordEvent("healed", f"{sites} reachable again; reconcile on copies seen"))
        return state

    # -- facts -----------------------------------------------------------------------------
    def designated(self, state: WorkloadState) -> bool:
        """Every site before us in the topology is silent or barred by the constraints."""
        before = state.topology.before(state.site)
        return all(not state.live(s) or not state.eligible(s) for s in before)

    def live_copies(self, state: WorkloadState) -> tuple[ev.Copy, ...]:
        """Copies on live sites; ours as published, or as we know it when not yet published."""
        copies = [c for c in state.copies if c.site != state.site and state.live(c.site)]
        if state.driver.phase in (Phase.STARTING, Phase.RUNNING):
            mine = next((c for c in state.copies if c.site == state.site), None)
            if mine is None:
                mine = ev.Copy(state.site, state.driver.started_at or state.booted_at)
            copies.append(mine)
        return tuple(copies)

    def winner(self, state: WorkloadState, copies: Iterable[ev.Copy]) -> ev.Copy | None:
        copies = tuple(copies)
        moved = next((c for c in copies if c.site == state.moved_to), None)
        if moved is not None:  # an operator chose where it runs
            return moved
        key = RECONCILE_KEYS[self.params.reconcile]
        rank = state.topology.rank
        return min(copies, key=lambda c: (*key(c, rank(c.site)), c.site), default=None)

    # -- rules -----------------------------------------------------------------------------
    def _act(self, state: WorkloadState, now: float, out: list[Command]) -> WorkloadState:
        running = state.driver.phase in (Phase.STARTING, Phase.RUNNING)
        if not running and state.lost_to is not None:
            state = replace(state, lost_to=None)
        copies = self.live_copies(state)
        if running and state.lost_to is None and len(copies) > 1:
            state = self._reconcile(state, copies, out)
        facts = SbaFacts(
            unknown=state.driver.unknown,
            barred=state.refused is not None,
            shutting=state.shutting_down,
            running=running,
            lost=state.lost_to is not None,
            designated=self.designated(state),
            other_copy=any(c.site != state.site for c in copies),
            synced=state.synced or now >= state.booted_at + self.params.sync_grace,
            cooling=now < state.cooldown_until,
            moved_here=state.moved_to == state.site,
        )
        goal, why = first_match(SBA_GOALS, facts)
        act = WORKLOAD_ACTIONS.get((goal, state.driver.phase, state.driver.active))
        if act is not None and self._may_drive(state, act, now):
            if facts.barred:
                why = f"{why}: {state.refused}"
            elif state.lost_to is not None:
                why = f"{why} (policy {self.params.reconcile}: {state.lost_to} survives)"
            state, cmd = self._drive(state, act, why, now)
            out.append(cmd)
        return state

    def _reconcile(
        self, state: WorkloadState, copies: tuple[ev.Copy, ...], out: list[Command]
    ) -> WorkloadState:
        best = self.winner(state, copies)
        if best is None or best.site == state.site:
            return state
        losers = tuple(c for c in copies if c is not best)
        policy = self.params.reconcile
        names = ", ".join(c.site for c in copies)
        why = f"{len(copies)} copies ran at once ({names}); {policy} keeps {best.site}"
        out.append(RecordDivergence(policy, best, losers, why))
        return replace(state, lost_to=best.site)

    def _wake_times(self, state: WorkloadState, now: float) -> Iterable[float | None]:
        if not state.synced:
            yield state.booted_at + self.params.sync_grace
        yield state.cooldown_until
        yield self._fence_retry_at(state)


SplitBrainAllowed.folds = {
    **COMMON_FOLDS,
    **{event: SplitBrainAllowed._unchanged for event in get_args(ev.LeaseEvent)},  # no lease
    ev.PeerCopiesSeen: SplitBrainAllowed._copies_seen,
    ev.PartitionHealed: SplitBrainAllowed._healed,
}
