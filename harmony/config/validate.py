"""The checks msgspec's types cannot express: a site config is refused on the first one."""

from __future__ import annotations

from pathlib import Path

from harmony.config.base import ENV_NAME_RE, NAME_RE, ConfigError
from harmony.config.drivers import ProcessDriverConfig
from harmony.config.exposure import is_loopback_host
from harmony.config.facts import capacity_problem, labels_problem, price_problem
from harmony.config.site import SiteConfig
from harmony.config.slots import name_problem as slot_name_problem
from harmony.config.timings import timing_problem
from harmony.config.topologies import topology_problem
from harmony.site_roles import role_problem
from harmony.strategies.registry import uses_lease


def insecure_problem(cfg: SiteConfig) -> str | None:
    """Why this site must not start as configured, or None. A site reachable from other
    machines without TLS and credentials is anyone's: refuse unless the config says so."""
    sec = cfg.security
    if sec is not None and sec.dir:
        return None
    if sec is not None and sec.insecure:
        return None
    hosts = [("nats.host", cfg.nats.host)] if cfg.nats.mode == "embedded" else []
    if cfg.metrics.port:
        hosts.append(("metrics.host", cfg.metrics.host))
    exposed = [(f, h) for f, h in hosts if not is_loopback_host(h)]
    if not exposed:
        return None
    return (
        f"{exposed[0][0]} {exposed[0][1]!r} is not loopback and there is no [security] "
        "section: the "
        "mesh would accept anyone without TLS or credentials. Create keys with `harmony mesh "
        'init` and set [security] dir = "<mesh dir>", or set [security] insecure = true to '
        "run without (anyone who reaches the ports can run and stop your workloads)"
    )


def validate(cfg: SiteConfig, source: str | Path) -> None:
    """Checks msgspec's types cannot express. Raises on the first problem found."""

    def bad(field: str, reason: str) -> ConfigError:
        return ConfigError(source, field, reason)

    for field, value in (("mesh", cfg.mesh), ("site", cfg.site)):
        if not NAME_RE.match(value):
            raise bad(field, f"{value!r} is not a valid name (letters, digits, '-', '_')")
    n = cfg.nats
    if n.mode == "external" and not n.servers:
        raise bad("nats.servers", "external mode needs at least one server URL")
    for f in ("client_port", "cluster_port", "http_port", "leafnode_port"):
        port = getattr(n, f)
        if not 0 < port < 65536:
            raise bad(f"nats.{f}", f"{port} is not a TCP port")
    if not 0 <= cfg.metrics.port < 65536:
        raise bad("metrics.port", f"{cfg.metrics.port} is not a TCP port (0: no metrics)")
    if not 0 <= n.kv_replicas <= 5:
        raise bad("nats.kv_replicas", f"{n.kv_replicas}: must be 0 (automatic) or 1 to 5")
    role = role_problem(cfg.site, n, witness=cfg.witness, valid_name=NAME_RE.match)
    if role is not None:
        raise bad(*role)
    facts = (labels_problem(cfg.labels), capacity_problem(cfg.capacity), price_problem(cfg.price))
    for fact in facts:
        if fact is not None:
            raise bad(*fact)
    sec = cfg.security
    if sec is not None and not sec.dir and not sec.insecure:
        raise bad("security.dir", "the mesh directory (`harmony mesh init`), or insecure = true")
    problem_text = insecure_problem(cfg)
    if problem_text is not None:
        raise bad("security", problem_text)
    problem = timing_problem(cfg.timings, any(uses_lease(w.strategy) for w in cfg.workloads))
    if problem is not None:
        raise bad(*problem)
    s = cfg.supervision
    if s.max_restarts < 0:
        raise bad("supervision.max_restarts", "must be >= 0")
    if s.within <= 0:
        raise bad("supervision.within", "must be > 0")
    if cfg.witness and cfg.workloads:
        raise bad("workloads", "a witness site runs no workloads")
    seen: set[str] = set()
    for i, w in enumerate(cfg.workloads):
        where = f"workloads[{i}]"
        if not NAME_RE.match(w.name):
            raise bad(f"{where}.name", f"{w.name!r} is not a valid name")
        if w.name in seen:
            raise bad(f"{where}.name", f"duplicate workload name {w.name!r}")
        seen.add(w.name)
        if (why := slot_name_problem(w)) is not None:
            raise bad(f"{where}.name", why)
        if isinstance(w.driver, ProcessDriverConfig) and not w.driver.command:
            raise bad(f"{where}.driver.command", "must not be empty")
        for j, var in enumerate(w.driver.pass_env):
            if not ENV_NAME_RE.match(var):
                raise bad(f"{where}.driver.pass_env[{j}]", f"{var!r} is not a variable name")
        if (problem := topology_problem(w.topology)) is not None:
            field, reason = problem
            raise bad(f"{where}.topology" + (f".{field}" if field else ""), reason)
