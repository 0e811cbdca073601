"""Random mode: rounds of faults drawn from a seed, drawn while the run's time remains.

Each round injects one fault, holds it, undoes it, and waits until every workload is back
in its desired state, so faults never pile up into a state nobody could recover from, and
each fault is checked on its own. Rounds are drawn *lazily*, one when the previous one is
done and while less than `duration` has passed, so the faults fill the whole duration
however long recoveries take (a schedule drawn up front has to guess them). The draws are a
pure function of (scenario, seed): `random.Random(seed)` and the scenario's lists, never the
clock or the mesh, so the same seed gives the same sequence of rounds; only how many of
them fit depends on the clock. Sites are named, except ``@leader``, ``@runner:<w>`` and
``@all`` (resolved when the step runs).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import cast

import msgspec

from harmony.sim.scenario import (
    HOOK_FAULTS,
    Delay,
    Drop,
    Flag,
    FlagName,
    Flap,
    Freeze,
    Heal,
    Kill,
    Move,
    Partition,
    Pause,
    Restart,
    Resume,
    Scenario,
    Step,
    Thaw,
    Unflag,
    WaitUntil,
)

Round = list[Step]


class RandomSchedule:
    """Draws rounds from `seed`; `steps(clock)` yields them while time remains."""

    def __init__(self, scenario: Scenario, seed: int, duration: float) -> None:
        self.scenario = scenario
        self.seed = seed
        self.duration = duration
        self.rng = random.Random(seed)
        self.kinds = scenario.random_kinds() or ["minority-partition"]
        self.rounds = 0

    def steps(self, clock: Callable[[], float] = time.monotonic) -> Iterator[Step]:
        """Every step of every round, a new round only while `duration` has not passed
        since the first step was asked for (the run's last round may end after it)."""
        start = clock()
        while clock() - start < self.duration:
            yield from self.next_round()

    def next_round(self) -> Round:
        sc, rng = self.scenario, self.rng
        kind = rng.choice(self.kinds)
        hold = round(rng.uniform(sc.random.hold_min, sc.random.hold_max), 1)
        pause_before = round(rng.uniform(1.0, 5.0), 1)
        victim = rng.choice(list(sc.sites))
        inject, undo = _fault(sc, kind, rng, victim)
        self.rounds += 1
        steps = [_with_after(inject[0], pause_before), *inject[1:]]
        if undo:
            steps += [_with_after(undo[0], hold), *undo[1:]]
        note = f"round {self.rounds}: recovered from {kind}"
        timeout = sc.checks.recovery_bound
        return [*steps, WaitUntil(desired=True, timeout=timeout, note=note)]

    def preview(self, rounds: int) -> list[Step]:
        """The first `rounds` rounds of this seed (a fresh draw: this schedule is untouched)."""
        fresh = RandomSchedule(self.scenario, self.seed, self.duration)
        return [s for _ in range(rounds) for s in fresh.next_round()]

    def sample(self) -> list[Step]:
        """One step of every kind this scenario may draw (what a backend must support)."""
        rng = random.Random(0)
        out: list[Step] = []
        for kind in self.kinds:
            inject, undo = _fault(self.scenario, kind, rng, self.scenario.sites[0])
            out += [*inject, *undo]
        return out


def _with_after(step: Step, after: float) -> Step:
    return msgspec.structs.replace(step, after=after)


Fault = tuple[list[Step], list[Step]]
"""(steps that inject a fault, steps that undo it after the hold)"""


@dataclass(frozen=True)
class _Pick:
    """What a round's fault is drawn with: the scenario, the generator, the victim."""

    sc: Scenario
    rng: random.Random
    victim: str

    @property
    def others(self) -> list[str]:
        return [s for s in self.sc.all_sites if s != self.victim]


def _bridge(p: _Pick) -> Fault:
    """Two sites cut from each other, the others bridging them (a flap with too few)."""
    if len(p.others) < 2:
        return _flap(p)
    a, b = p.rng.sample(list(p.sc.all_sites), 2)
    return [Partition(groups=[[a], [b]], note="the others bridge")], [Heal()]


def _flap(p: _Pick) -> Fault:
    other = p.rng.choice(p.others)
    down, up = round(p.rng.uniform(0.5, 2.0), 1), round(p.rng.uniform(0.5, 2.0), 1)
    return [Flap(links=[[p.victim, other]], times=p.rng.randint(3, 6), down=down, up=up)], []


def _hook_fault(p: _Pick, flag: str) -> Fault:
    """A hook that misbehaves where it hurts: on the holder, during what needs it."""
    spec = p.rng.choice([w for w in p.sc.workloads if w.driver == "hooks"])
    holder, name = f"@runner:{spec.name}", cast(FlagName, flag)
    clear = Unflag(site="@all", flag=name)
    if flag == "probe-fail":
        return [Flag(site=holder, flag=name)], [clear]
    if flag == "stop-fail":
        return [Flag(site=holder, flag=name), Move(workload=spec.name, to="@next")], [clear]
    if flag == "fence-hang":
        cut = Partition(groups=[[holder], ["@rest"]])
        return [Flag(site=holder, flag=name), cut], [Heal(), clear]
    target = p.rng.choice([spec.primary, *spec.standbys])
    return [Flag(site=target, flag=name), Move(workload=spec.name, to=target)], [clear]


FAULTS: dict[str, Callable[[_Pick], Fault]] = {
    "minority-partition": lambda p: ([Partition(groups=[[p.victim], p.others])], [Heal()]),
    "one-way": lambda p: ([Partition(groups=[[p.victim], p.others], one_way=True)], [Heal()]),
    "bridge": _bridge,
    "kill": lambda p: ([Kill(site=p.victim)], [Restart(site=p.victim)]),
    "kill-server": lambda p: ([Kill(site=p.victim, what="server")], []),
    "kill-leader": lambda p: ([Kill(site="@leader", what="server")], []),
    "pause": lambda p: ([Pause(site=p.victim)], [Resume(site=p.victim)]),
    "delay": lambda p: ([Delay(seconds=round(p.rng.uniform(0.05, 0.5), 2))], [Heal()]),
    "drop": lambda p: ([Drop(probability=round(p.rng.uniform(0.01, 0.1), 3))], [Heal()]),
    "flap": _flap,
    "agent-kill": lambda p: ([Kill(site=p.victim, what="agent")], [Restart(site=p.victim)]),
    "freeze-site": lambda p: ([Freeze(site=p.victim, what="site")], [Thaw(site=p.victim)]),
    "freeze-agent+tether": lambda p: (
        [Freeze(site=p.victim, what="agent+tether")],
        [Thaw(site=p.victim)],
    ),
    **{k: partial(_hook_fault, flag=k.removeprefix("hook-")) for k in HOOK_FAULTS},
}
"""How each kind of `scenario.FAULT_KINDS` is drawn (a test holds the two equal)."""


def _fault(sc: Scenario, kind: str, rng: random.Random, victim: str) -> Fault:
    draw = FAULTS.get(kind)
    if draw is None:
        raise ValueError(f"no way to draw a fault of kind {kind!r}")
    return draw(_Pick(sc, rng, victim))
