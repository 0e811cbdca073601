"""Scenarios: a mesh (sites, witnesses, workloads, timings) and a timeline of faults.

A scenario is TOML decoded by msgspec into the typed structs below, so a typo is refused
before any process starts (`harmony.sim.scenario_file` reads a file and names the field
and line of a problem). Each step of the timeline is one table of ``[[steps]]`` whose
``do`` key selects the kind of step (a tagged union).

Process facts and flag files the steps rely on are described in `harmony.sim.backend`;
the checks of what the types cannot say are in `harmony.sim.validation`.

Timing of steps: ``at`` is an offset in seconds from the start of the timeline (the moment
the mesh is up and every workload runs where it should); without ``at`` a step runs
``after`` seconds (default 0) after the previous step finished.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

import msgspec

from harmony.config import CostTopologyConfig, Timings
from harmony.strategies.labels import SiteFacts, eligible, parse_constraints
from harmony.strategies.names import (
    DEFAULT_RECONCILE,
    DEFAULT_STRATEGY,
    ReconcilePolicy,
    StrategyName,
)

SIGNALS = ("KILL", "TERM", "INT")
FlagName = Literal["probe-fail", "stop-fail", "fence-hang", "start-fail"]
FLAGS: tuple[str, ...] = get_args(FlagName)
"""Flag files the `hooks` scripts of `harmony.sim.hook_scripts` obey (see there)."""


class _S(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class WorkloadSpec(_S, kw_only=True):
    """One workload of the mesh; the process is the example workload unless `command` says.

    `driver = "hooks"` runs the example workload through `harmony.sim.hook_scripts`
    (start/stop/fence/probe scripts obeying the flag files of `flag` steps); `command`
    must then stay empty. In `command`, an element ``{python}`` (or that text inside a
    ``sh -c`` string) becomes this interpreter, so a scenario can run Python modules.
    """

    name: str
    strategy: StrategyName = DEFAULT_STRATEGY
    primary: str
    standbys: list[str] = []
    reconcile: ReconcilePolicy = DEFAULT_RECONCILE
    command: list[str] = []
    driver: Literal["process", "hooks"] = "process"
    probe_interval: float = 0.5
    """hooks: seconds between probes (short, so a probe failure of ~3 s is seen)."""
    hook_timeout: float = 10.0
    """hooks: a hook running longer is killed (its process group) and counts as failed."""
    constraints: list[str] = []
    """geo constraints on the sites' labels (``jurisdiction in ["EU"]``, the scenario's
    `labels`): no copy may ever run outside them (the `geo` checker)."""
    topology: Literal["failover", "cost"] = "failover"
    """``cost``: the cheapest of primary + standbys, by the scenario's `prices` (a move needs
    a saving above `min_saving` held for `hold` s, at most one per `cooldown` s)."""
    min_saving: float = 1.0
    hold: float = 5.0
    cooldown: float = 30.0
    replicas: int = 0
    """> 0: a horizontal workload of this many slots over ``primary`` and ``standbys``
    (`harmony.sim.horizontal`); the fields below are its topology's."""
    spread_label: str = ""
    max_skew: int = 1
    max_unavailable: int = 1
    settle: float = 30.0

    def eligible_sites(self, labels: Mapping[str, Mapping[str, str]]) -> list[str]:
        """The sites of its topology that its constraints allow (all, without any)."""
        facts = [SiteFacts(s, labels.get(s, {})) for s in (self.primary, *self.standbys)]
        kept, _ = eligible(facts, parse_constraints(self.constraints))
        return [f.name for f in kept]


def cost_topology(w: WorkloadSpec) -> CostTopologyConfig:
    """The site config's topology of a ``cost`` workload."""
    return CostTopologyConfig(
        sites=[w.primary, *w.standbys],
        min_saving=w.min_saving,
        hold=w.hold,
        cooldown=w.cooldown,
        constraints=list(w.constraints),
    )


class Checks(_S, kw_only=True):
    """Bounds of the checkers, seconds."""

    recovery_bound: float = 45.0
    """After every fault, the desired state is reached within this many seconds."""
    side_bound: float = 20.0
    """split-brain-allowed: every up side of a partition runs the workload after this long."""
    settle: float = 3.0
    """At the end, the desired state must hold this long (every up site answering)."""
    resume_bound: float = 1.0
    """A copy of a site frozen whole (``freeze what="site"``) may act this long after the
    thaw before it sees its fence deadline passed: the residual risk that only the
    fencing-token guard covers. Longer is a violation; any committed stale write is one."""
    expect_violations: list[str] = []
    """Checkers whose violations this scenario expects: a known limitation it documents.
    The run passes only if each of them did report one (and nothing else did)."""


HOOK_FAULTS = tuple(f"hook-{flag}" for flag in FLAGS)
"""Random kinds that need a workload with ``driver = "hooks"``."""
FAULT_KINDS = (
    "minority-partition",
    "one-way",
    "bridge",
    "kill",
    "kill-server",
    "kill-leader",
    "pause",
    "delay",
    "drop",
    "flap",
    "agent-kill",
    "freeze-site",
    "freeze-agent+tether",
    *HOOK_FAULTS,
)

ONE_WAY = ("one-way",)
"""Random kinds a core-and-edge mesh cannot carry out: an edge's leaf link is one
connection, whose cut holds both directions."""


class RandomMode(_S, kw_only=True):
    """What `--seed S --duration D` may draw for this scenario."""

    faults: list[str] | None = None
    """None: every kind of `FAULT_KINDS` the scenario allows (hook faults only when a
    workload uses the hooks driver)."""
    hold_min: float = 3.0
    hold_max: float = 12.0


class _Step(_S, kw_only=True):
    at: float | None = None
    """Seconds from the start of the timeline; None: `after` seconds after the previous step."""
    after: float = 0.0
    note: str = ""
    bound: float | None = None
    """This fault's own recovery bound (seconds), instead of `checks.recovery_bound`."""


class SiteStep(_Step, kw_only=True):
    """A step on one site: its name, ``@leader``, ``@runner:<workload>`` or
    ``@leaf:<edge>`` (the core an edge's leaf link uses; resolved when the step runs)."""

    site: str


class Partition(_Step, tag="partition", tag_field="do", kw_only=True):
    """Sites in different groups cannot reach each other; unlisted sites reach everyone (a
    bridge). With `one_way`, only traffic from the first group to the others is cut. A
    group may name ``@runner:<workload>``, ``@leader`` or ``@leaf:<edge>`` (resolved when
    the step runs) and one group may be ``["@rest"]``: every site no other group names."""

    groups: list[list[str]]
    one_way: bool = False


class Heal(_Step, tag="heal", tag_field="do", kw_only=True):
    """Heal `links` (pairs of sites, both directions), or every link, delay and drop."""

    links: list[list[str]] = []


class Flap(_Step, tag="flap", tag_field="do", kw_only=True):
    """Cut and heal `links` `times` times: down for `down` s, up for `up` s."""

    links: list[list[str]]
    times: int = 5
    down: float = 1.0
    up: float = 1.0


class Kill(SiteStep, tag="kill", tag_field="do", kw_only=True):
    """Kill a site's agent process group (its server dies with it; its workloads' tethers
    live outside the group and fence at their deadline), its nats-server only, or both."""

    what: Literal["agent", "server", "both"] = "both"
    signal: str = "KILL"


class Restart(SiteStep, tag="restart", tag_field="do", kw_only=True):
    """Start a killed site again (agent and its nats-server) and wait until it is ready."""


class Pause(SiteStep, tag="pause", tag_field="do", kw_only=True):
    """SIGSTOP the agent's process group: a frozen agent, like a very long GC pause."""


class Resume(SiteStep, tag="resume", tag_field="do", kw_only=True):
    """SIGCONT the agent's process group (what `pause` stopped)."""


class Freeze(SiteStep, tag="freeze", tag_field="do", kw_only=True):
    """SIGSTOP processes of a site: `site` every one (agent group, nats-server, every
    process of its workloads' containments: a paused VM); `agent+tether` the agent group
    and the harmony processes of the containments (tethers, keepers, watchers, hooks) but
    not the workload; `agent` the agent group only (like `pause`)."""

    what: Literal["site", "agent+tether", "agent"] = "site"


class Thaw(SiteStep, tag="thaw", tag_field="do", kw_only=True):
    """SIGCONT what `freeze` stopped on that site (and anything of it found since)."""


class Flag(SiteStep, tag="flag", tag_field="do", kw_only=True):
    """Create a flag file the site's hook scripts obey; removed after `hold` seconds
    (without blocking the timeline) or, without `hold`, by an `unflag` step or the end.
    Its `site` may also be ``@all`` (every site)."""

    flag: FlagName
    hold: float | None = None


class Unflag(SiteStep, tag="unflag", tag_field="do", kw_only=True):
    """Remove a flag file (`site` may be ``@all``)."""

    flag: FlagName


class SetPrice(SiteStep, tag="set-price", tag_field="do", kw_only=True):
    """Change a site's price: the file its price hook prints (see `Scenario.prices`)."""

    price: float


class Move(_Step, tag="move", tag_field="do", kw_only=True):
    """The operator's move (the `MoveWorkload` the TUI sends) of `workload` to site `to`
    (or ``@next``: the first site of its topology not running it), sent to `via`
    (default: a site running it, else `to`)."""

    workload: str
    to: str
    via: str = ""


class FillDisk(SiteStep, tag="fill-disk", tag_field="do", kw_only=True):
    """Fill the site's data_dir file system (a tmpfs of `data_dir_size`) until ENOSPC."""


class FreeDisk(SiteStep, tag="free-disk", tag_field="do", kw_only=True):
    """Remove the file `fill-disk` wrote."""


class Delay(_Step, tag="delay", tag_field="do", kw_only=True):
    """Hold every chunk on `links` (default: all) for `seconds` before forwarding it."""

    links: list[list[str]] = []
    seconds: float
    one_way: bool = False


class Drop(_Step, tag="drop", tag_field="do", kw_only=True):
    """Drop each chunk of bytes on `links` (default: all) with `probability`."""

    links: list[list[str]] = []
    probability: float
    one_way: bool = False


class WaitUntil(_Step, tag="wait-until", tag_field="do", kw_only=True):
    """Wait (at most `timeout` s) until a condition holds; failing to is a violation.

    Conditions (all given ones must hold): `workload` runs exactly on `running_on`, or has
    exactly `copies` running copies; `site` sees `peer` in `state`; `desired`: every
    workload runs as the current faults say it should.
    """

    timeout: float = 60.0
    workload: str = ""
    running_on: list[str] | None = None
    copies: int | None = None
    site: str = ""
    peer: str = ""
    state: str = ""
    desired: bool = False


Step = (
    Partition
    | Heal
    | Flap
    | Kill
    | Restart
    | Pause
    | Resume
    | Freeze
    | Thaw
    | Flag
    | Unflag
    | SetPrice
    | Move
    | FillDisk
    | FreeDisk
    | Delay
    | Drop
    | WaitUntil
)


class Scenario(_S, kw_only=True):
    name: str
    proves: str = ""
    mesh: str = ""
    sites: list[str]
    witnesses: list[str] = []
    cores: list[str] = []
    """A core-and-edge mesh: its core sites (an odd number, at least 3, among `sites` and
    `witnesses`; every witness is one); the other sites are edges, leaf nodes of every core
    through the fault proxy. Empty: every site is a core, routed to every other."""
    timings: dict[str, float] = {}
    site_timings: dict[str, dict[str, float]] = {}
    """Per-site overrides of `timings` (``[site_timings.b] lease_ttl = 6.0``): sites that
    disagree, which the mesh must refuse."""
    expect_refused: list[str] = []
    """Sites started last, after the others run, that must refuse to start: exit code 2
    and a log naming both disagreeing lease_ttl values. Until refused they count as down."""
    data_dir_size: dict[str, str] = {}
    """Sites whose data_dir is a tmpfs of this size (``{ a = "8M" }``), for `fill-disk`.
    Needs mounting (root); where impossible the scenario is skipped (failed under CI)."""
    labels: dict[str, dict[str, str]] = {}
    """Each site's labels (``[labels] a = { jurisdiction = "EU" }``), as its config says."""
    prices: dict[str, float] = {}
    """Each priced site's starting price (``[prices] a = 3.0``): its ``[price]`` is a hook
    printing a file that `set-price` steps rewrite, run every `price_interval` s."""
    price_interval: float = 0.5
    workloads: list[WorkloadSpec] = []
    horizontal: list[WorkloadSpec] = []
    """Set by the loader (`harmony.sim.horizontal.with_slots`): the horizontal workloads as
    written, while `workloads` holds their slots."""
    checks: Checks = msgspec.field(default_factory=Checks)
    random: RandomMode = msgspec.field(default_factory=RandomMode)
    steps: list[Step] = []
    source: str = ""

    @property
    def mesh_name(self) -> str:
        return self.mesh or self.name

    @property
    def all_sites(self) -> list[str]:
        return [*self.sites, *self.witnesses]

    @property
    def edges(self) -> list[str]:
        """Sites that are edges (none unless `cores` names the cores)."""
        return [s for s in self.all_sites if self.cores and s not in self.cores]

    @property
    def uses_hooks(self) -> bool:
        return any(w.driver == "hooks" for w in self.workloads)

    def timing_values(self, site: str = "") -> Timings:
        """The timings of the mesh, or of one site with its `site_timings` applied."""
        own = self.site_timings.get(site, {}) if site else {}
        merged = {**msgspec.to_builtins(SIM_TIMINGS), **self.timings, **own}
        return msgspec.convert(merged, Timings)

    def random_kinds(self) -> list[str]:
        """The kinds random mode draws from (see `RandomMode.faults`)."""
        if self.random.faults is not None:
            return list(self.random.faults)
        return [
            k
            for k in FAULT_KINDS
            if (self.uses_hooks or k not in HOOK_FAULTS) and not (self.cores and k in ONE_WAY)
        ]


# Safe for absolute-consistency (check_timings passes) and short, so a failover takes seconds.
SIM_TIMINGS = Timings(
    heartbeat_interval=0.25,
    suspect_after=1.5,
    silent_after=2.5,
    lease_ttl=4.0,
    renew_interval=0.5,
    fence_margin=1.5,
    stop_grace=0.5,
    ask_timeout=3.0,
)
