"""`harmony config check`: validate site configurations without starting anything.

One file: everything `load_config` refuses (the safety inequality included). Several files:
also the facts a mesh shares, which no single file can be checked for: one mesh name, one
lease_ttl / clock_skew / bucket replicas among the sites that hold leases (the bucket has one
max_age, and an agent whose timings differ from the bucket's is refused at start), and the
same strategy and topology for a workload wherever it is configured. With one file or
several, whether the given sites can place each workload (`harmony.config.placement`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from harmony.config import (
    ConfigError,
    FailoverTopologyConfig,
    HorizontalTopologyConfig,
    ProcessDriverConfig,
    SiteConfig,
    WorkloadConfig,
    kv_replicas,
    load_config,
)
from harmony.config.placement import meaning, placement
from harmony.security.check import describe as describe_security
from harmony.security.check import security_problems
from harmony.strategies import uses_lease
from harmony.strategies.timing import fence_budget
from harmony.textsafe import redact_url


@dataclass(frozen=True)
class Problem:
    """One reason to refuse: `file` is empty when the problem is between files."""

    file: str
    field: str
    reason: str

    def __str__(self) -> str:
        return ": ".join(p for p in (self.file, self.field, self.reason) if p)


@dataclass
class Report:
    configs: dict[str, SiteConfig]
    """File (as given) -> its configuration, for every file that is valid on its own."""
    problems: list[Problem]
    notes: list[str]


def check(paths: Sequence[str]) -> Report:
    configs: dict[str, SiteConfig] = {}
    problems: list[Problem] = []
    for path in paths:
        try:
            cfg = load_config(path)
        except ConfigError as e:
            problems.append(Problem(e.file, e.field, e.reason))
            continue
        found = security_problems(cfg)
        problems += [Problem(path, field, reason) for field, reason in found]
        if not found:
            configs[path] = cfg
    notes: list[str] = []
    if len(configs) > 1:
        problems += cross_check(configs, notes)
    findings, said = placement(configs)
    problems += [Problem(f.file, f.field, f.reason) for f in findings]
    notes += said
    return Report(configs, problems, notes)


def _leases(cfg: SiteConfig) -> bool:
    """Some workload of this site runs under a lease (absolute-consistency)."""
    return any(uses_lease(w.strategy) for w in cfg.workloads)


def _by_value(
    configs: dict[str, SiteConfig], get: Callable[[SiteConfig], object]
) -> dict[object, list[str]]:
    groups: dict[object, list[str]] = defaultdict(list)
    for path, cfg in configs.items():
        groups[get(cfg)].append(path)
    return groups


def _differs(groups: dict[object, list[str]], show: Callable[[object], str] = repr) -> str:
    return "; ".join(f"{show(v)} in {', '.join(files)}" for v, files in groups.items())


def cross_check(configs: dict[str, SiteConfig], notes: list[str]) -> list[Problem]:
    """What must agree between the files of one mesh; `notes` gets harmless differences."""
    problems: list[Problem] = []
    meshes = _by_value(configs, lambda c: c.mesh)
    if len(meshes) > 1:
        problems.append(Problem("", "mesh", f"differs: {_differs(meshes)}: one mesh per check"))
    for site, files in _by_value(configs, lambda c: c.site).items():
        if len(files) > 1:
            problems.append(
                Problem("", "site", f"{site!r} is configured twice: {', '.join(files)}")
            )
    cores = _by_value(configs, lambda c: tuple(sorted(c.nats.cores)))
    if len(cores) > 1:
        said = _differs(cores, lambda v: ", ".join(cast(tuple[str, ...], v)) or "none")
        why = "every site of a mesh names the same cores (an agent that does not is refused)"
        problems.append(Problem("", "nats.cores", f"differs: {said}: {why}"))

    leasing = {p: c for p, c in configs.items() if _leases(c)}
    bucket = "an agent whose lease_ttl or replicas differ from the lease bucket's is refused"
    shared: list[tuple[str, Callable[[SiteConfig], object], Callable[[object], str], str]] = [
        ("timings.lease_ttl", lambda c: c.timings.lease_ttl, _s, f"lease timings ({bucket})"),
        ("nats.kv_replicas", kv_replicas, str, f"lease bucket replicas ({bucket})"),
        (
            "timings.clock_skew",
            lambda c: c.timings.clock_skew,
            _s,
            "clock_skew (one bound on the servers' clocks: use the largest everywhere)",
        ),
    ]
    for field, get, show, what in shared:
        groups = _by_value(leasing, get)
        if len(groups) > 1:
            said = _differs(groups, show)
            problems.append(
                Problem(
                    "", field, f"differs: {said}: every site of a mesh must use the same {what}"
                )
            )
    for field in ("renew_interval", "fence_margin", "stop_grace"):
        groups = _by_value(leasing, _timing(field))
        if len(groups) > 1:
            notes.append(
                f"timings.{field} differs ({_differs(groups, _s)}): allowed, each site's "
                "own inequality is what keeps it safe"
            )
    secure = _by_value(configs, lambda c: c.security is not None and bool(c.security.dir))
    if len(secure) > 1:
        said = "; ".join(
            f"{'secure' if v else 'insecure'} in {', '.join(f)}" for v, f in secure.items()
        )
        problems.append(
            Problem("", "security", f"differs: {said}: TLS routes and plaintext ones never meet")
        )
    problems += _workloads(configs)
    problems += _cores_know_edge_leases(configs)
    return problems


def _cores_know_edge_leases(configs: dict[str, SiteConfig]) -> list[Problem]:
    """A core's server lets an edge's leaf link write only the leases of workloads in the
    core's own file (the server's permissions come from its site's config), so every core
    must list every absolute-consistency workload an edge runs -- with role "none" if the
    core does not run it -- or that edge's lease writes are refused and it never runs it."""
    problems: list[Problem] = []
    cores = {c.site: p for p, c in configs.items() if c.nats.cores and c.site in c.nats.cores}
    for path, cfg in configs.items():
        if not cfg.nats.cores or cfg.site in cfg.nats.cores:
            continue
        for w in cfg.workloads:
            if not uses_lease(w.strategy):
                continue
            for core, core_path in sorted(cores.items()):
                if all(x.name != w.name for x in configs[core_path].workloads):
                    problems.append(
                        Problem(
                            core_path,
                            "workloads",
                            f"no workload {w.name!r}, which edge {cfg.site!r} ({path}) runs "
                            f"with absolute-consistency: core {core!r}'s server allows an edge "
                            "only the lease writes of workloads in its own file, so the edge "
                            "could never take the lease (list it here with the same topology)",
                        )
                    )
    return problems


def _timing(name: str) -> Callable[[SiteConfig], object]:
    return lambda c: getattr(c.timings, name)


def _s(value: object) -> str:
    return f"{value:g} s"


def _workloads(configs: dict[str, SiteConfig]) -> list[Problem]:
    """A workload is one thing mesh-wide: the same strategy and topology wherever it appears,
    and every site of its topology whose file is given must configure it (or never runs it)."""
    problems: list[Problem] = []
    where: dict[str, dict[str, WorkloadConfig]] = defaultdict(dict)
    for path, cfg in configs.items():
        for w in cfg.workloads:
            where[w.name][path] = w
    sites = {cfg.site: path for path, cfg in configs.items()}
    for name, found in sorted(where.items()):
        problems += _agree(name, found)
        for path, w in found.items():
            for site in w.topology.sites:
                other = sites.get(site)
                if other is not None and other not in found:
                    problems.append(
                        Problem(
                            other,
                            "workloads",
                            f"no workload {name!r}, but {path} places it on site {site!r}: "
                            f"{site} would never run it",
                        )
                    )
    return list(dict.fromkeys(problems))


def _agree(name: str, found: dict[str, WorkloadConfig]) -> list[Problem]:
    """The facts of a workload that differ between the files configuring it: strategy,
    reconcile, and its topology by meaning (all of it when the kinds differ)."""
    facts: dict[str, dict[str, str]] = {
        path: {
            "strategy": repr(w.strategy),
            "reconcile": repr(w.reconcile),
            **{f"topology.{k}": v for k, v in meaning(w.topology).items()},
        }
        for path, w in found.items()
    }
    shown = {path: {f"topology.{k}": v for k, v in _shown(w).items()} for path, w in found.items()}
    kinds = {f["topology.kind"] for f in facts.values()}
    attrs = dict.fromkeys(a for f in facts.values() for a in f)
    problems: list[Problem] = []
    for attr in attrs:
        if len(kinds) > 1 and attr.startswith("topology.") and attr != "topology.kind":
            continue
        groups: dict[str, list[str]] = defaultdict(list)
        for path, f in facts.items():
            groups[f.get(attr, "")].append(path)
        if len(groups) > 1:
            said = "; ".join(
                f"{shown[files[0]].get(attr, facts[files[0]][attr])} in {', '.join(files)}"
                for files in groups.values()
            )
            problems.append(Problem("", f"workload {name!r} {attr}", f"differs: {said}"))
    return problems


def _shown(w: WorkloadConfig) -> dict[str, str]:
    """How a topology's facts are written back: as the file said them."""
    return {"constraints": repr(list(w.topology.constraints))}


def summary(path: str, cfg: SiteConfig) -> list[str]:
    """A few lines a person can check the file against."""
    n, t = cfg.nats, cfg.timings
    where = f"{n.host}:{n.client_port}" if n.mode == "embedded" else redact_url(n.servers)
    role = "witness" if cfg.witness else "site"
    lines = [
        f"{path}: ok",
        f"  {role} {cfg.site} of mesh {cfg.mesh}; nats {n.mode} ({where}); data {cfg.data_dir}",
        f"  {describe_security(cfg)}",
    ]
    lines += site_facts(cfg)
    for w in cfg.workloads:
        lines.append(f"  workload {w.name}: {w.strategy}, {_driver(w)} driver, {_where(w)}")
        if w.topology.constraints:
            lines.append(f"    constraints: {'; '.join(w.topology.constraints)}")
    if not cfg.workloads:
        lines.append("  no workloads")
    if not _leases(cfg):
        lines.append("  lease timings unused (no absolute-consistency workload)")
        return lines
    b = fence_budget(t)
    lines += [
        f"  lease: lease_ttl {_s(t.lease_ttl)}, renew_interval {_s(t.renew_interval)}, "
        f"fence_margin {_s(t.fence_margin)}, stop_grace {_s(t.stop_grace)}, "
        f"clock_skew {_s(t.clock_skew)}, bucket replicas {kv_replicas(cfg)}",
        f"  safe: {b}",
        f"  renewals: {b.renew_attempts} sent before the fence deadline "
        f"(lease_ttl - fence_margin = {_s(t.lease_ttl - t.fence_margin)}; "
        f"{b.min_renew_attempts} needed)",
    ]
    return lines


def site_facts(cfg: SiteConfig) -> list[str]:
    """The site's labels, capacity and price, when it has any."""
    said = []
    if cfg.labels:
        said.append("labels " + ", ".join(f"{k}={v}" for k, v in sorted(cfg.labels.items())))
    if cfg.capacity is not None:
        said.append(f"capacity {cfg.capacity}")
    if cfg.price is not None:
        p = cfg.price
        said.append(
            f"price {p.value:g}"
            if p.value is not None
            else f"price from {p.hook} every {_s(p.interval)}"
        )
    return [f"  {'; '.join(said)}"] if said else []


def _where(w: WorkloadConfig) -> str:
    t = w.topology
    if isinstance(t, FailoverTopologyConfig):
        return f"primary {t.primary}, standbys {', '.join(t.standbys) or 'none'}"
    if isinstance(t, HorizontalTopologyConfig):
        spread = f"spread over {t.spread_label}" if t.spread_label else "one domain per site"
        return (
            f"horizontal, {t.replicas} replicas over {', '.join(t.sites)} ({spread}, "
            f"max_skew {t.max_skew}, max_unavailable {t.max_unavailable})"
        )
    return (
        f"cost over {', '.join(t.sites)} (min_saving {t.min_saving:g}, hold {_s(t.hold)}, "
        f"cooldown {_s(t.cooldown)})"
    )


def _driver(w: WorkloadConfig) -> str:
    return "process" if isinstance(w.driver, ProcessDriverConfig) else "hooks"


def mesh_summary(configs: dict[str, SiteConfig]) -> str:
    cfg = next(iter(configs.values()))
    sites = ", ".join(sorted(c.site for c in configs.values()))
    workloads = sorted({w.name for c in configs.values() for w in c.workloads})
    said = f"mesh {cfg.mesh}: {len(configs)} files agree (sites {sites}"
    said += f"; workloads {', '.join(workloads)})" if workloads else ")"
    return said
