"""Random mode: a schedule of faults drawn from a seed, the same schedule for the same seed.

The draw is a pure function of (scenario, seed, duration): `random.Random(seed)` and the
scenario's site lists, nothing else (no clock, no state of the mesh). Each round injects
one fault, holds it, undoes it, and waits until every workload is back in its desired
state, so faults never pile up into a state nobody could recover from, and each fault is
checked on its own. Sites are referred to by name, except "@leader", resolved when run.
"""

from __future__ import annotations

import random

from harmony.sim.scenario import (
    Delay,
    Drop,
    Flap,
    Heal,
    Kill,
    Partition,
    Pause,
    Restart,
    Resume,
    Scenario,
    Step,
    WaitUntil,
)


def draw_schedule(scenario: Scenario, seed: int, duration: float) -> list[Step]:
    rng = random.Random(seed)
    sites, every = list(scenario.sites), list(scenario.all_sites)
    settle = scenario.checks.recovery_bound
    steps: list[Step] = []
    elapsed = 0.0
    kinds = scenario.random.faults or ["minority-partition"]
    lo, hi = scenario.random.hold_min, scenario.random.hold_max
    while elapsed < duration:
        kind = rng.choice(kinds)
        hold = round(rng.uniform(lo, hi), 1)
        pause_before = round(rng.uniform(1.0, 5.0), 1)
        victim = rng.choice(sites)
        inject, undo = _fault(kind, rng, victim, every, hold)
        steps.append(_with_after(inject[0], pause_before))
        steps.extend(inject[1:])
        if undo is not None:
            steps.append(_with_after(undo, hold))
        steps.append(WaitUntil(desired=True, timeout=settle, note=f"recovered from {kind}"))
        elapsed += pause_before + hold + 10.0  # a typical recovery; the schedule is a draw
    return steps


def _with_after(step: Step, after: float) -> Step:
    import msgspec

    return msgspec.structs.replace(step, after=after)


def _fault(
    kind: str, rng: random.Random, victim: str, every: list[str], hold: float
) -> tuple[list[Step], Step | None]:
    others = [s for s in every if s != victim]
    if kind == "minority-partition":
        return [Partition(groups=[[victim], others])], Heal()
    if kind == "one-way":
        return [Partition(groups=[[victim], others], one_way=True)], Heal()
    if kind == "bridge" and len(others) >= 2:
        a, b = rng.sample(every, 2)
        return [Partition(groups=[[a], [b]], note="the others bridge")], Heal()
    if kind == "kill":
        return [Kill(site=victim)], Restart(site=victim)
    if kind == "kill-server":
        return [Kill(site=victim, what="server")], None
    if kind == "kill-leader":
        return [Kill(site="@leader", what="server")], None
    if kind == "pause":
        return [Pause(site=victim)], Resume(site=victim)
    if kind == "delay":
        return [Delay(seconds=round(rng.uniform(0.05, 0.5), 2))], Heal()
    if kind == "drop":
        return [Drop(probability=round(rng.uniform(0.01, 0.1), 3))], Heal()
    other = rng.choice(others)
    down, up = round(rng.uniform(0.5, 2.0), 1), round(rng.uniform(0.5, 2.0), 1)
    return [Flap(links=[[victim, other]], times=rng.randint(3, 6), down=down, up=up)], None
