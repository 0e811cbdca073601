"""Scenario files: a mesh (sites, witnesses, workloads, timings) and a timeline of faults.

A scenario is TOML decoded by msgspec into the typed structs below, so a typo is refused
before any process starts: `load_scenario` raises `ScenarioError` naming the file, the field
(dotted path) and, where it can be found, the TOML line. Each step of the timeline is one
table of ``[[steps]]`` whose ``do`` key selects the kind of step (a tagged union).

Timing of steps: ``at`` is an offset in seconds from the start of the timeline (the moment
the mesh is up and every workload runs where it should); without ``at`` a step runs
``after`` seconds (default 0) after the previous step finished.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import msgspec

from harmony.config import NAME_RE, Timings

SIGNALS = ("KILL", "TERM", "INT")


class ScenarioError(Exception):
    """A scenario file the simulation refuses to run; nothing was started."""

    def __init__(self, file: str | Path, field: str, reason: str, line: int | None = None) -> None:
        self.file, self.field, self.reason, self.line = str(file), field, reason, line
        where = f"{self.file}:{line}" if line else self.file
        super().__init__(f"{where}: {field}: {reason}" if field else f"{where}: {reason}")


class _S(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class WorkloadSpec(_S, kw_only=True):
    """One workload of the mesh; the process is the example workload unless `command` says."""

    name: str
    strategy: Literal["absolute-consistency", "split-brain-allowed"] = "absolute-consistency"
    primary: str
    standbys: list[str] = []
    reconcile: Literal["keep-original", "keep-replacement", "best-score"] = "keep-original"
    command: list[str] = []


class Checks(_S, kw_only=True):
    """Bounds of the checkers, seconds."""

    recovery_bound: float = 45.0
    """After every fault, the desired state is reached within this many seconds."""
    side_bound: float = 20.0
    """split-brain-allowed: every up side of a partition runs the workload after this long."""
    settle: float = 3.0
    """At the end, the desired state must hold this long (every up site answering)."""
    expect_violations: list[str] = []
    """Checkers whose violations this scenario expects: a known limitation it documents.
    The run passes only if each of them did report one (and nothing else did)."""


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
)


class RandomMode(_S, kw_only=True):
    """What `--seed S --duration D` may draw for this scenario."""

    faults: list[str] = msgspec.field(default_factory=lambda: list(FAULT_KINDS))
    hold_min: float = 3.0
    hold_max: float = 12.0


class _Step(_S, kw_only=True):
    at: float | None = None
    """Seconds from the start of the timeline; None: `after` seconds after the previous step."""
    after: float = 0.0
    note: str = ""
    bound: float | None = None
    """This fault's own recovery bound (seconds), instead of `checks.recovery_bound`."""


class Partition(_Step, tag="partition", tag_field="do", kw_only=True):
    """Sites in different groups cannot reach each other; unlisted sites reach everyone (a
    bridge). With `one_way`, only traffic from the first group to the others is cut."""

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


class Kill(_Step, tag="kill", tag_field="do", kw_only=True):
    """Kill a site's agent (its server dies with it), its nats-server only, or both."""

    site: str
    what: Literal["agent", "server", "both"] = "both"
    signal: str = "KILL"


class Restart(_Step, tag="restart", tag_field="do", kw_only=True):
    """Start a killed site again (agent and its nats-server) and wait until it is ready."""

    site: str


class Pause(_Step, tag="pause", tag_field="do", kw_only=True):
    """SIGSTOP the agent's process group: a frozen agent, like a very long GC pause."""

    site: str


class Resume(_Step, tag="resume", tag_field="do", kw_only=True):
    site: str


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


Step = Partition | Heal | Flap | Kill | Restart | Pause | Resume | Delay | Drop | WaitUntil


class Scenario(_S, kw_only=True):
    name: str
    proves: str = ""
    mesh: str = ""
    sites: list[str]
    witnesses: list[str] = []
    timings: dict[str, float] = {}
    workloads: list[WorkloadSpec] = []
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

    def timing_values(self) -> Timings:
        return msgspec.convert({**msgspec.to_builtins(SIM_TIMINGS), **self.timings}, Timings)


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


# ---------------------------------------------------------------------------------- loading
def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ScenarioError(p, "", f"cannot read: {e.strerror or e}") from None
    return parse_scenario(text, p)


def parse_scenario(text: str, source: str | Path = "<string>") -> Scenario:
    try:
        sc = msgspec.toml.decode(text, type=Scenario)
    except msgspec.ValidationError as e:
        field, reason = _split(str(e))
        raise ScenarioError(source, field, reason, toml_line(text, field)) from None
    except msgspec.DecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise ScenarioError(
            source, "", f"not valid TOML: {e}", int(m.group(1)) if m else None
        ) from None
    sc = msgspec.structs.replace(sc, source=str(source))
    problem = validate(sc)
    if problem is not None:
        field, reason = problem
        raise ScenarioError(source, field, reason, toml_line(text, field))
    return sc


def _split(msg: str) -> tuple[str, str]:
    m = re.search(r" - at `\$\.?(.*)`$", msg)
    unknown = re.search(r"unknown field `([^`]*)`", msg)
    field = m.group(1) if m else ""
    if unknown:
        field = f"{field}.{unknown.group(1)}" if field else unknown.group(1)
    return field or "(top level)", msg[: m.start()] if m else msg


def toml_line(text: str, field: str) -> int | None:
    """Best effort: the 1-based line of `field` (``steps[2].groups[0]``) in the TOML text.

    Each ``name[i]`` segment that is an array of tables moves to the i-th ``[[name]]``
    header; a plain key moves to its first ``key =`` line (or ``[key]`` header) after that,
    within the current table. None when nothing matched.
    """
    lines = text.splitlines()
    pos, found = 0, None
    for part in field.split("."):
        m = re.fullmatch(r"([A-Za-z0-9_-]+)(?:\[(\d+)\])?(?:\[\d+\])*", part)
        if not m:
            break
        key, index = m.group(1), m.group(2)
        header = re.compile(rf"^\s*\[\[\s*{re.escape(key)}\s*\]\]")
        hits = [i for i, line in enumerate(lines) if i >= pos and header.match(line)]
        if index is not None and hits:
            if int(index) >= len(hits):
                break
            pos = found = hits[int(index)]
            continue
        assign = re.compile(rf"^\s*({re.escape(key)}\s*=|\[\s*{re.escape(key)}\s*\])")
        for i in range(pos, len(lines)):
            if assign.match(lines[i]):
                pos = found = i
                break
            if i > pos and lines[i].lstrip().startswith("["):
                break
        else:
            break
    return None if found is None else found + 1


def validate(sc: Scenario) -> tuple[str, str] | None:
    """Checks the types cannot express: (field, reason) of the first problem, or None."""
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
    try:
        t = sc.timing_values()
    except msgspec.ValidationError as e:
        return "timings", str(e)
    if sc.workloads and any(w.strategy == "absolute-consistency" for w in sc.workloads):
        from harmony.strategies.timing import check_timings

        problems = check_timings(
            t.lease_ttl,
            t.renew_interval,
            t.fence_margin,
            t.stop_grace,
            t.heartbeat_interval,
            silent_after=t.silent_after,
        )
        if problems:
            return "timings", "unsafe for absolute-consistency: " + "; ".join(problems)
    for i, kind in enumerate(sc.random.faults):
        if kind not in FAULT_KINDS:
            return f"random.faults[{i}]", f"{kind!r}: one of {', '.join(FAULT_KINDS)}"
    if not 0 < sc.random.hold_min <= sc.random.hold_max:
        return "random.hold_min", "0 < hold_min <= hold_max"
    seen: set[str] = set()
    for i, w in enumerate(sc.workloads):
        if not NAME_RE.match(w.name) or w.name in seen:
            return f"workloads[{i}].name", f"{w.name!r} is not a valid, unique workload name"
        seen.add(w.name)
        for j, s in enumerate([w.primary, *w.standbys]):
            if s not in sc.sites:
                where = "primary" if j == 0 else f"standbys[{j - 1}]"
                return f"workloads[{i}].{where}", f"{s!r} is not a (non-witness) site"
    for i, step in enumerate(sc.steps):
        problem = _check_step(sc, step)
        if problem is not None:
            return f"steps[{i}].{problem[0]}", problem[1]
    return None


def _check_step(sc: Scenario, step: Step) -> tuple[str, str] | None:
    names = set(sc.all_sites)
    workloads = {w.name for w in sc.workloads}

    def site_ref(s: str) -> bool:
        return s in names or s == "@leader" or s.removeprefix("@runner:") in workloads

    if step.at is not None and step.at < 0:
        return "at", "must be >= 0"
    if step.after < 0:
        return "after", "must be >= 0"
    if step.bound is not None and step.bound < 0:
        return "bound", "must be >= 0"
    if isinstance(step, Partition):
        listed = [s for g in step.groups for s in g]
        if len(step.groups) < 2:
            return "groups", "a partition needs at least two groups"
        bad = [s for s in listed if s not in names]
        if bad:
            return "groups", f"unknown sites {bad}"
        if len(set(listed)) != len(listed):
            return "groups", "a site is in two groups"
    if isinstance(step, Heal | Flap | Delay | Drop):
        for j, link in enumerate(step.links):
            if len(link) != 2 or link[0] == link[1] or not set(link) <= names:
                return f"links[{j}]", f"{link} is not a pair of two different known sites"
    if isinstance(step, Flap) and (step.times < 1 or step.down <= 0 or step.up <= 0):
        return "times", "times >= 1, down > 0 and up > 0"
    if isinstance(step, Kill | Restart | Pause | Resume) and not site_ref(step.site):
        return "site", f"{step.site!r} is not a site, @leader or @runner:<workload>"
    if isinstance(step, Kill) and step.signal.upper().removeprefix("SIG") not in SIGNALS:
        return "signal", f"{step.signal!r}: one of {', '.join(SIGNALS)}"
    if isinstance(step, Delay) and step.seconds < 0:
        return "seconds", "must be >= 0"
    if isinstance(step, Drop) and not 0 <= step.probability <= 1:
        return "probability", "must be between 0 and 1"
    if isinstance(step, WaitUntil):
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
