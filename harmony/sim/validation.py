"""What a scenario's types cannot say: site references, safe timings, sensible steps.

`first_problem` returns the (dotted field, reason) of the first problem, which
`scenario_file.parse_scenario` turns into a `ScenarioError` naming the file and the TOML line.
Nothing here starts a process: a refused scenario has cost nothing.
"""

from __future__ import annotations

import re
from typing import Never

import msgspec

from harmony.config import NAME_RE, timing_problem, topology_problem
from harmony.sim import scenario
from harmony.sim.horizontal import spec_problem as horizontal_problem
from harmony.sim.scenario import (
    FAULT_KINDS,
    HOOK_FAULTS,
    ONE_WAY,
    SIGNALS,
    Scenario,
    Step,
    cost_topology,
)
from harmony.strategies import uses_lease
from harmony.strategies.labels import ConstraintError, labels_problem, parse_constraints

Problem = tuple[str, str] | None
SIZE_RE = re.compile(r"^[1-9][0-9]*[KMG]?$")
ONE_WAY_EDGE = (
    "no one-way faults in a core-and-edge mesh: an edge's leaf link is one connection, "
    "whose cut, delay or drop holds both directions"
)
REFS = "@leader, @runner:<workload>, @leaf:<edge>"
MIN_DISK = 4 << 20
"""A site's nats-server and journal need a few MiB before the disk is filled on purpose."""


def disk_bytes(size: str) -> int:
    """``"8M"`` -> 8388608 (K, M, G are powers of 1024; no suffix: bytes)."""
    factor = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1:], 1)
    return int(size.rstrip("KMG")) * factor


def first_problem(sc: Scenario) -> Problem:
    return _mesh(sc) or _cores(sc) or _timings(sc) or _random(sc) or _workloads(sc) or _steps(sc)


def _mesh(sc: Scenario) -> Problem:
    names = sc.all_sites
    if not sc.sites:
        return "sites", "at least one site is needed"
    for i, s in enumerate(names):
        field = f"sites[{i}]" if i < len(sc.sites) else f"witnesses[{i - len(sc.sites)}]"
        if not NAME_RE.match(s):
            return field, f"{s!r} is not a valid site name"
    if len(set(names)) != len(names):
        return "sites", "a site is listed twice (sites + witnesses)"
    if not NAME_RE.match(sc.mesh_name):
        return "mesh" if sc.mesh else "name", f"{sc.mesh_name!r} is not a valid mesh name"
    for i, s in enumerate(sc.expect_refused):
        if s not in names:
            return f"expect_refused[{i}]", f"{s!r} is not a site of this scenario"
    if set(sc.expect_refused) >= set(names):
        return "expect_refused", "at least one site must start normally"
    for s, size in sc.data_dir_size.items():
        if s not in names:
            return f"data_dir_size.{s}", f"{s!r} is not a site of this scenario"
        if not SIZE_RE.match(size):
            return f"data_dir_size.{s}", f"{size!r}: a size like 8M (K, M or G)"
        if disk_bytes(size) < MIN_DISK:
            return f"data_dir_size.{s}", f"{size!r}: at least 4M (its nats-server needs room)"
    return None


def _cores(sc: Scenario) -> Problem:
    """A core-and-edge mesh: an odd number (3 or more) of distinct cores, sites of the
    scenario, every witness among them, and at least one edge."""
    if not sc.cores:
        return None
    for i, c in enumerate(sc.cores):
        if c not in sc.all_sites:
            return f"cores[{i}]", f"{c!r} is not a site of this scenario"
    if len(set(sc.cores)) != len(sc.cores):
        return "cores", "a core is listed twice"
    if len(sc.cores) < 3 or len(sc.cores) % 2 == 0:
        return "cores", (
            f"{len(sc.cores)} cores: an odd number, at least 3 (the core is one Raft group "
            "that must survive a core's loss while edges depend on it)"
        )
    for i, w in enumerate(sc.witnesses):
        if w not in sc.cores:
            return f"witnesses[{i}]", f"{w!r} is a witness: a witness is a core (it votes)"
    if not sc.edges:
        return "cores", "every site is a core: leave cores out for an all-core mesh"
    for i, s in enumerate(sc.expect_refused):
        if s in sc.cores:
            return f"expect_refused[{i}]", f"{s!r} is a core: only an edge may start refused"
    return None


def _timings(sc: Scenario) -> Problem:
    for s in sc.site_timings:
        if s not in sc.all_sites:
            return f"site_timings.{s}", f"{s!r} is not a site of this scenario"
    for site in ["", *sc.site_timings]:
        field = f"site_timings.{site}" if site else "timings"
        try:
            t = sc.timing_values(site)
        except msgspec.ValidationError as e:
            return field, str(e)
        lease = any(uses_lease(w.strategy) for w in sc.workloads)
        problem = timing_problem(t, lease)
        if problem is not None:
            return f"{field}{problem[0].removeprefix('timings')}", problem[1]
    return None


def _random(sc: Scenario) -> Problem:
    for i, kind in enumerate(sc.random.faults or []):
        if kind not in FAULT_KINDS:
            return f"random.faults[{i}]", f"{kind!r}: one of {', '.join(FAULT_KINDS)}"
        if kind in ONE_WAY and sc.cores:
            return f"random.faults[{i}]", f"{kind!r}: {ONE_WAY_EDGE}"
        if kind in HOOK_FAULTS and not sc.uses_hooks:
            return f"random.faults[{i}]", f'{kind!r} needs a workload with driver = "hooks"'
    if not 0 < sc.random.hold_min <= sc.random.hold_max:
        return "random.hold_min", "0 < hold_min <= hold_max"
    return None


def _workloads(sc: Scenario) -> Problem:
    for site, labels in sc.labels.items():
        if site not in sc.all_sites:
            return f"labels.{site}", f"{site!r} is not a site of the scenario"
        bad = labels_problem(labels)
        if bad is not None:
            return f"labels.{site}", bad[1]
    for site, price in sc.prices.items():
        if site not in sc.sites:
            return f"prices.{site}", f"{site!r} is not a (non-witness) site of the scenario"
        if not 0 <= price < 1e12:
            return f"prices.{site}", f"{price}: a number from 0 to 1e12"
    if not 0 < sc.price_interval <= 60:
        return "price_interval", f"{sc.price_interval}: seconds, > 0 and <= 60"
    if sc.horizontal:
        return "horizontal", "set by the loader from the workloads with replicas: leave it out"
    seen: set[str] = set()
    for i, w in enumerate(sc.workloads):
        if not NAME_RE.match(w.name) or w.name in seen:
            return f"workloads[{i}].name", f"{w.name!r} is not a valid, unique workload name"
        seen.add(w.name)
        for j, s in enumerate([w.primary, *w.standbys]):
            if s not in sc.sites:
                where = "primary" if j == 0 else f"standbys[{j - 1}]"
                return f"workloads[{i}].{where}", f"{s!r} is not a (non-witness) site"
        if w.driver == "hooks" and w.command:
            return (
                f"workloads[{i}].command",
                "the hooks driver runs the example workload through harmony.sim.hook_scripts: "
                "leave command empty",
            )
        try:
            parse_constraints(w.constraints)
        except ConstraintError as e:
            return f"workloads[{i}].constraints", str(e)
        if (why := horizontal_problem(w)) is not None:
            return f"workloads[{i}].replicas", why
        if w.probe_interval <= 0 or w.hook_timeout <= 0:
            return f"workloads[{i}].probe_interval", "probe_interval and hook_timeout > 0"
        if w.topology == "cost":
            problem = topology_problem(cost_topology(w))
            if problem is not None:
                return f"workloads[{i}].{problem[0]}", problem[1]
        if not [s for s in [w.primary, *w.standbys] if s not in sc.expect_refused]:
            return f"workloads[{i}].primary", "every site of its topology is expect_refused"
    return None


def _steps(sc: Scenario) -> Problem:
    for i, step in enumerate(sc.steps):
        problem = check_step(sc, step)
        if problem is not None:
            return f"steps[{i}].{problem[0]}", problem[1]
    return None


def check_step(sc: Scenario, step: Step) -> Problem:
    """The first problem of one step: its timing, then what its kind needs."""
    if step.at is not None and step.at < 0:
        return "at", "must be >= 0"
    if step.after < 0:
        return "after", "must be >= 0"
    if step.bound is not None and step.bound < 0:
        return "bound", "must be >= 0"
    return _check_kind(_Refs(sc), step)


class _Refs:
    """The names a step may refer to in one scenario."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.sites = set(sc.all_sites)
        self.workloads = {w.name for w in sc.workloads}

    def site(self, s: str) -> bool:
        """A site, ``@leader``, ``@runner:<workload>`` or ``@leaf:<edge>``."""
        if s.startswith("@leaf:"):
            return s.removeprefix("@leaf:") in self.sc.edges
        return s in self.sites or s == "@leader" or s.removeprefix("@runner:") in self.workloads

    def links(self, links: list[list[str]]) -> Problem:
        edges = set(self.sc.edges)
        for j, link in enumerate(links):
            if len(link) != 2 or link[0] == link[1] or not set(link) <= self.sites:
                return f"links[{j}]", f"{link} is not a pair of two different known sites"
            if set(link) <= edges:
                return f"links[{j}]", (
                    f"{link}: two edges have no link of their own (an edge links to the cores "
                    "only; partition them to part them)"
                )
        return None

    def one_way(self, one_way: bool) -> Problem:
        return _when(one_way and bool(self.sc.cores), "one_way", ONE_WAY_EDGE)

    def on_site(self, step: scenario.SiteStep) -> Problem:
        if self.site(step.site):
            return None
        return "site", f"{step.site!r} is not a site or a reference ({REFS})"


def _check_kind(refs: _Refs, step: Step) -> Problem:
    """One case per kind of step; a kind without one is refused, never passed."""
    sc = refs.sc
    match step:
        case scenario.Partition():
            return _check_partition(refs, step)
        case scenario.Heal():
            return refs.links(step.links)
        case scenario.Flap():
            bad = step.times < 1 or step.down <= 0 or step.up <= 0
            return refs.links(step.links) or _when(bad, "times", "times >= 1, down > 0 and up > 0")
        case scenario.Delay():
            bad = step.seconds < 0
            return (
                refs.links(step.links)
                or refs.one_way(step.one_way)
                or _when(bad, "seconds", "must be >= 0")
            )
        case scenario.Drop():
            bad = not 0 <= step.probability <= 1
            return (
                refs.links(step.links)
                or refs.one_way(step.one_way)
                or _when(bad, "probability", "must be between 0 and 1")
            )
        case scenario.Kill():
            bad = step.signal.upper().removeprefix("SIG") not in SIGNALS
            why = f"{step.signal!r}: one of {', '.join(SIGNALS)}"
            return refs.on_site(step) or _when(bad, "signal", why)
        case (
            scenario.Restart()
            | scenario.Pause()
            | scenario.Resume()
            | scenario.Freeze()
            | scenario.Thaw()
        ):
            return refs.on_site(step)
        case scenario.FillDisk() | scenario.FreeDisk():
            bad = step.site not in sc.data_dir_size
            why = f"{step.site!r} has no data_dir_size: its data_dir is no small tmpfs"
            return refs.on_site(step) or _when(bad, "site", why)
        case scenario.Flag() | scenario.Unflag():
            return _check_flag(refs, step)
        case scenario.SetPrice():
            bad = step.site not in sc.prices
            why = f"{step.site!r} has no price in the scenario's prices: it runs no price hook"
            neg = not 0 <= step.price < 1e12
            return _when(bad, "site", why) or _when(neg, "price", "a number from 0 to 1e12")
        case scenario.Move():
            return _check_move(refs, step)
        case scenario.WaitUntil():
            return _check_wait(refs, step)
        case _:
            return _no_checks(step)


def _no_checks(step: Never) -> Problem:
    """Typed `Never`: mypy fails where a kind of `Step` has no case above."""
    return "do", f"no checks for steps of kind {type(step).__name__}"


def _when(bad: bool, field: str, reason: str) -> Problem:
    return (field, reason) if bad else None


def _check_partition(refs: _Refs, step: scenario.Partition) -> Problem:
    listed = [s for g in step.groups for s in g]
    if len(step.groups) < 2:
        return "groups", "a partition needs at least two groups"
    bad = [s for s in listed if not refs.site(s) and s != "@rest"]
    if bad:
        return "groups", f"unknown sites {bad}"
    if len(set(listed)) != len(listed):
        return "groups", "a site is in two groups"
    if "@rest" in listed and ["@rest"] not in step.groups:
        return "groups", '"@rest" must be a group of its own: ["@rest"]'
    return refs.one_way(step.one_way)


def _check_flag(refs: _Refs, step: scenario.Flag | scenario.Unflag) -> Problem:
    if not (refs.site(step.site) or step.site == "@all"):
        return "site", f"{step.site!r} is not a site, @all or a reference ({REFS})"
    if not refs.sc.uses_hooks:
        return "flag", 'flags are read by hook scripts: no workload has driver = "hooks"'
    if isinstance(step, scenario.Flag) and step.hold is not None and step.hold <= 0:
        return "hold", "must be > 0 (leave it out to keep the flag until an unflag step)"
    return None


def _check_move(refs: _Refs, step: scenario.Move) -> Problem:
    if step.workload not in refs.workloads:
        return "workload", f"unknown workload {step.workload!r}"
    spec = next(w for w in refs.sc.workloads if w.name == step.workload)
    if step.to not in {spec.primary, *spec.standbys, "@next"}:
        return "to", f"{step.to!r} is not a site of {step.workload}'s topology (or @next)"
    if step.via and not refs.site(step.via):
        return "via", f"{step.via!r} is not a site or a reference ({REFS})"
    return None


def _check_wait(refs: _Refs, step: scenario.WaitUntil) -> Problem:
    sc, names, workloads = refs.sc, refs.sites, refs.workloads
    if step.workload and step.workload not in workloads:
        return "workload", f"unknown workload {step.workload!r}"
    if (step.running_on is not None or step.copies is not None) and not step.workload:
        return "workload", "running_on and copies need a workload"
    if step.running_on is not None and not set(step.running_on) <= set(sc.sites):
        return "running_on", f"unknown sites in {step.running_on}"
    if bool(step.site) != bool(step.peer) or bool(step.peer) != bool(step.state):
        return "peer", "a peer condition needs site, peer and state"
    if step.site and not {step.site, step.peer} <= names:
        return "site", "unknown site in the peer condition"
    if not (step.workload or step.site or step.desired):
        return "do", "wait-until needs a condition (workload, site/peer/state or desired)"
    if step.timeout <= 0:
        return "timeout", "must be > 0"
    return None
