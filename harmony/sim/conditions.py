"""Conditions a timeline waits for, evaluated on the latest snapshots of every site.

A condition is true or not yet; the runner polls it until its deadline (never a blind
sleep). `desired` compares where workloads run with what the current faults imply
(`World.expect`): copies per side of a partition, none on a dead site.
"""

from __future__ import annotations

from collections.abc import Sequence

from harmony.actors.messages import Snapshot
from harmony.sim.observe import peer_state, runners
from harmony.sim.scenario import WaitUntil, WorkloadSpec
from harmony.sim.world import DOWN, World


def desired_holds(
    snaps: dict[str, Snapshot], world: World, workloads: Sequence[WorkloadSpec]
) -> bool:
    for w in workloads:
        expect = world.expect(w)
        if expect is None:
            continue
        running = runners(snaps, w.name)
        placed: set[str] = set()
        for side, want in expect.items():
            if side == DOWN:
                continue
            members = set(side.split(","))
            placed |= members
            if len(running & members) != want:
                return False
        if running - placed:
            return False
    return True


def holds(
    step: WaitUntil, snaps: dict[str, Snapshot], world: World, workloads: Sequence[WorkloadSpec]
) -> bool:
    if step.workload:
        running = runners(snaps, step.workload)
        if step.running_on is not None and running != set(step.running_on):
            return False
        if step.copies is not None and len(running) != step.copies:
            return False
        if step.running_on is None and step.copies is None and not running:
            return False
    if step.site and peer_state(snaps, step.site, step.peer) != step.state:
        return False
    return not step.desired or desired_holds(snaps, world, workloads)


def describe(step: WaitUntil) -> str:
    parts = []
    if step.workload and step.running_on is not None:
        parts.append(f"{step.workload} runs exactly on {{{', '.join(step.running_on)}}}")
    if step.workload and step.copies is not None:
        parts.append(f"{step.workload} has {step.copies} copies")
    if step.workload and step.running_on is None and step.copies is None:
        parts.append(f"{step.workload} runs somewhere")
    if step.site:
        parts.append(f"{step.site} sees {step.peer} {step.state}")
    if step.desired:
        parts.append("every workload in its desired state")
    return " and ".join(parts)


def state_line(snaps: dict[str, Snapshot], workloads: Sequence[WorkloadSpec]) -> str:
    """`ledger on b (token 7); web on a, c` for the live view."""
    out = []
    for w in workloads:
        path = f"agent/workload/{w.name}/run"
        where = []
        for site, snap in sorted(snaps.items()):
            for a in snap.actors:
                if a.path == path and a.state == "running":
                    token = a.detail.get("token", "")
                    where.append(f"{site} (token {token})" if token else site)
        out.append(f"{w.name} on {', '.join(where) or 'nowhere'}")
    return "; ".join(out)
