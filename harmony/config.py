"""Site configuration: one TOML file per site, decoded by msgspec into typed structs.

A file is either fully valid or refused: `load_config` raises `ConfigError` naming the file,
the field (as a dotted path) and the reason, and the agent never starts half-configured.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import msgspec

from harmony.site_roles import lease_replicas, role_problem
from harmony.strategies.labels import ConstraintError, labels_problem, parse_constraints
from harmony.strategies.names import (
    DEFAULT_RECONCILE,
    DEFAULT_STRATEGY,
    RECONCILE_POLICIES,
    STRATEGY_NAMES,
    ReconcilePolicy,
    StrategyName,
)
from harmony.strategies.registry import uses_lease
from harmony.strategies.timing import (
    RECOMMENDED_CLOCK_SKEW,
    RECOMMENDED_FENCE_MARGIN,
    RECOMMENDED_HEARTBEAT_INTERVAL,
    RECOMMENDED_LEASE_TTL,
    RECOMMENDED_RENEW_INTERVAL,
    RECOMMENDED_SILENT_AFTER,
    RECOMMENDED_STOP_GRACE,
    site_timing_problems,
)
from harmony.strategies.topology import repeated_site

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
"""Mesh, site and workload names become NATS subject tokens and file names: keep them plain."""
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ConfigError(Exception):
    """A configuration file (or a value in it) that the agent refuses to run with."""

    def __init__(self, file: str | Path, field: str, reason: str) -> None:
        self.file = str(file)
        self.field = field
        self.reason = reason
        super().__init__(f"{self.file}: {field}: {reason}" if field else f"{self.file}: {reason}")


class _Base(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class NatsConfig(_Base):
    """How the agent reaches the mesh: its own embedded nats-server, or existing servers."""

    mode: Literal["embedded", "external"] = "embedded"
    host: str = "127.0.0.1"
    client_port: int = 4222
    cluster_port: int = 6222
    http_port: int = 8222
    """Monitoring port of the embedded server; readiness is checked on its /healthz."""
    routes: list[str] = []
    """Cluster routes to the other sites' servers, e.g. ``nats-route://127.0.0.1:6223``."""
    servers: list[str] = []
    """Client URLs. Embedded: extra URLs to fall back on. External: the servers to use."""
    cluster_advertise: str = ""
    """Advertised route address; set to an unreachable address to force traffic via routes."""
    jetstream_max_store: str = "1G"
    kv_replicas: int = 0
    """Replicas of the lease bucket; 0: min(3, servers in the mesh, or cores if named)."""
    role: Literal["core", "edge"] = "core"
    """An edge's server is a leaf node of the core (see `harmony.site_roles`)."""
    cores: list[str] = []
    """The mesh's core sites, the same list on every site; empty: every site is a core."""
    leafnode_port: int = 7422
    """A core's listener for the edges' leaf connections (only when `cores` is named)."""
    leaf_remotes: list[str] = []
    """An edge's: the leafnode URLs of several core servers (``nats-leaf://host:port``)."""


class SecurityConfig(_Base):
    """``[security]``: the site's trust material (see `harmony mesh init`).

    `dir` is a mesh directory (relative: from the config file's folder) holding at least
    ``roster.toml`` and ``sites/<site>/``. Without a ``[security]`` section, or with
    ``insecure = true`` and no `dir`, the site runs plaintext and anonymous: allowed only
    when `nats.host` is loopback, unless `insecure` says so.
    """

    dir: str = ""
    insecure: bool = False


class MetricsConfig(_Base):
    """``[metrics]``: where the agent serves Prometheus metrics (`harmony.actors.metrics`).
    Beyond loopback it serves them over mutual TLS (the site's certificate; a scraper needs
    one of the mesh's), so a non-loopback host needs ``[security]`` or ``insecure``."""

    host: str = "127.0.0.1"
    port: int = 9464
    """0: no metrics."""


MAX_HEARTBEAT_INTERVAL = 60.0
"""The slowest heartbeat a peer accepts (`harmony.actors.messages.Interval`)."""


class Timings(_Base):
    """All durations are seconds. The lease defaults are `harmony.strategies.timing`'s
    recommended values: the safety argument lives there, and so do its numbers."""

    heartbeat_interval: float = RECOMMENDED_HEARTBEAT_INTERVAL
    suspect_after: float = 1.5
    """A peer is *suspect* after this many heartbeat intervals without a heartbeat."""
    silent_after: float = RECOMMENDED_SILENT_AFTER
    """A peer is *silent* after this many intervals; must be <= 3 (detection bound)."""
    ask_timeout: float = 5.0
    lease_ttl: float = RECOMMENDED_LEASE_TTL
    renew_interval: float = RECOMMENDED_RENEW_INTERVAL
    fence_margin: float = RECOMMENDED_FENCE_MARGIN
    """The holder starts fencing at (last renewal sent) + lease_ttl - fence_margin."""
    stop_grace: float = RECOMMENDED_STOP_GRACE
    clock_skew: float = RECOMMENDED_CLOCK_SKEW
    """Bound on the wall-clock difference between the mesh's NATS servers: the server expires
    a lease by its own clock, so a skewed leader may expire it this much early (0 = one machine
    or tight time sync). Enters the safety inequality; every site of a mesh uses the same."""


class Supervision(_Base):
    """OTP-style restart intensity: more than `max_restarts` within `within` s escalates."""

    max_restarts: int = 5
    within: float = 30.0


class ProcessDriverConfig(_Base, tag="process", tag_field="kind"):
    command: list[str]
    restart: Literal["always", "on-failure", "never"] = "on-failure"
    restart_delay: float = 0.5
    env: dict[str, str] = {}
    pass_env: list[str] = []
    """Names of the agent's environment variables the workload also gets (see README: a
    workload's environment is an allowlist, not the agent's whole environment)."""
    cwd: str = ""


class HooksDriverConfig(_Base, tag="hooks", tag_field="kind"):
    start: str
    stop: str
    fence: str = ""
    probe: str = ""
    probe_interval: float = 2.0
    timeout: float = 30.0
    env: dict[str, str] = {}
    pass_env: list[str] = []
    """As for `process`: agent environment variables the hooks also get."""


DriverConfig = ProcessDriverConfig | HooksDriverConfig


class FailoverTopologyConfig(_Base, tag="failover", tag_field="kind"):
    primary: str
    standbys: list[str] = []
    constraints: list[str] = []
    """``geo`` constraints on the sites' labels (``jurisdiction in ["EU"]``): a site whose
    labels break one never runs the workload (`harmony.strategies.geo`)."""


TopologyConfig = FailoverTopologyConfig


class WorkloadConfig(_Base):
    name: str
    driver: DriverConfig
    topology: TopologyConfig
    strategy: StrategyName = DEFAULT_STRATEGY
    reconcile: ReconcilePolicy = DEFAULT_RECONCILE


class SiteConfig(_Base):
    mesh: str
    site: str
    data_dir: str = ""
    """Relative paths are taken from the config file's folder. Default: ``./data/<site>``."""
    witness: bool = False
    labels: dict[str, str] = {}
    """Free labels (``region``, ``jurisdiction``, ``provider``...) that workloads' constraints
    name; carried in heartbeats and summaries."""
    capacity: int | None = None
    """Copies of one workload this site takes (None: no limit said)."""
    nats: NatsConfig = msgspec.field(default_factory=NatsConfig)
    timings: Timings = msgspec.field(default_factory=Timings)
    supervision: Supervision = msgspec.field(default_factory=Supervision)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    workloads: list[WorkloadConfig] = []
    security: SecurityConfig | None = None
    source: str = ""
    """Set by `load_config`: the file this came from (not read from TOML)."""

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)


NAMED: dict[str, tuple[str, ...]] = {"strategy": STRATEGY_NAMES, "reconcile": RECONCILE_POLICIES}
"""Fields that hold one of a list of names: a refusal says which names are valid."""


def _field_of(msg: str) -> tuple[str, str]:
    """Split msgspec's "reason - at `$.a.b[0]`" into (field, reason)."""
    m = re.search(r" - at `\$\.?(.*)`$", msg)
    if not m:
        unknown = re.search(r"unknown field `([^`]*)`", msg)
        return (unknown.group(1) if unknown else "", msg)
    field, reason = m.group(1) or "(top level)", msg[: m.start()]
    names = NAMED.get(field.rsplit(".", 1)[-1])
    if names is not None and reason.startswith("Invalid enum value"):
        reason += f"; valid: {', '.join(names)}"
    return field, reason


def parse_config(data: bytes | str, source: str | Path = "<string>") -> SiteConfig:
    """Decode and validate TOML text; relative ``data_dir`` is resolved against `source`."""
    try:
        cfg = msgspec.toml.decode(data, type=SiteConfig)
    except msgspec.ValidationError as e:
        field, reason = _field_of(str(e))
        raise ConfigError(source, field, reason) from None
    except msgspec.DecodeError as e:
        raise ConfigError(source, "", f"not valid TOML: {e}") from None
    validate(cfg, source)
    base = Path(source).parent if str(source) != "<string>" else Path.cwd()
    data_dir = Path(cfg.data_dir) if cfg.data_dir else Path("data") / cfg.site
    if not data_dir.is_absolute():
        data_dir = (base / data_dir).resolve()
    security = cfg.security
    if security is not None and security.dir:
        sec_dir = Path(security.dir)
        if not sec_dir.is_absolute():
            sec_dir = (base / sec_dir).resolve()
        security = msgspec.structs.replace(security, dir=str(sec_dir))
        check_security_files(security, cfg.site, source)
    return msgspec.structs.replace(
        cfg, data_dir=str(data_dir), source=str(source), security=security
    )


ROSTER_FILE = "roster.toml"
"""The mesh directory's roster (see `harmony.security.roster`)."""
SECURITY_FILES: tuple[str, ...] = (
    ROSTER_FILE,
    *(f"sites/{{site}}/{f}" for f in ("identity.toml", "ca.pem", "clients-ca.pem")),
    *(f"sites/{{site}}/{f}" for f in ("cert.pem", "key.pem", "nkey.seed")),
)


def check_security_files(sec: SecurityConfig, site: str, source: str | Path) -> None:
    """Every file the site's server and connection read must be readable now: say which
    one is not, rather than fail later inside nats-server or TLS."""
    for name in SECURITY_FILES:
        f = Path(sec.dir) / name.format(site=site)
        try:
            with open(f, "rb"):
                pass
        except OSError as e:
            raise ConfigError(
                source, "security.dir", f"{f}: cannot read: {e.strerror or e}"
            ) from None


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


def is_loopback_host(host: str) -> bool:
    """Whether `host` names this machine's loopback only (what may run without TLS)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_source(
    path: str | Path,
    error: Callable[[Path, str, str], Exception] = ConfigError,
    what: str = "",
) -> bytes:
    """The bytes of a file the agent or the simulator is configured by (site config, roster,
    scenario), or `error(path, "", "cannot read[ what]: why")`: one way to read them all."""
    p = Path(path)
    try:
        return p.read_bytes()
    except OSError as e:
        raise error(p, "", f"cannot read{' ' + what if what else ''}: {e.strerror or e}") from None


def load_config(path: str | Path) -> SiteConfig:
    return parse_config(read_source(path), Path(path))


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
    label = labels_problem(cfg.labels)
    if label is not None:
        raise bad(f"labels.{label[0]}" if label[0] else "labels", label[1])
    if cfg.capacity is not None and cfg.capacity < 0:
        raise bad("capacity", "must be >= 0")
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
        if isinstance(w.driver, ProcessDriverConfig) and not w.driver.command:
            raise bad(f"{where}.driver.command", "must not be empty")
        for j, var in enumerate(w.driver.pass_env):
            if not ENV_NAME_RE.match(var):
                raise bad(f"{where}.driver.pass_env[{j}]", f"{var!r} is not a variable name")
        sites = [w.topology.primary, *w.topology.standbys]
        for j, site in enumerate(sites):
            if not NAME_RE.match(site):
                field = "primary" if j == 0 else f"standbys[{j - 1}]"
                raise bad(f"{where}.topology.{field}", f"{site!r} is not a valid site name")
        repeated = repeated_site(sites)
        if repeated is not None:
            raise bad(f"{where}.topology", repeated)
        try:
            parse_constraints(w.topology.constraints)
        except ConstraintError as e:
            raise bad(f"{where}.topology.constraints", str(e)) from None


def timing_problem(t: Timings, lease: bool) -> tuple[str, str] | None:
    """(field, reason) of the first problem of these timings, or None; `lease`: some
    workload runs under a lease, so the safety inequality must hold too. The one check of
    timings that site configs and simulation scenarios share."""
    for timing in msgspec.structs.fields(Timings):
        value = getattr(t, timing.name)
        field = f"timings.{timing.name}"
        if not math.isfinite(value):
            return field, f"{value} is not a number of seconds"
        if timing.name == "clock_skew":
            if value < 0:
                return field, "must be >= 0"
        elif value <= 0:
            return field, "must be > 0"
    if t.heartbeat_interval > MAX_HEARTBEAT_INTERVAL:
        return "timings.heartbeat_interval", (
            f"must be <= {MAX_HEARTBEAT_INTERVAL:g} s (peers refuse a slower heartbeat: it "
            "would hide a dead site for that long)"
        )
    if not t.suspect_after < t.silent_after:
        return "timings.silent_after", "must be greater than timings.suspect_after"
    if t.silent_after > 3:
        return "timings.silent_after", "must be <= 3 heartbeat intervals (detection bound)"
    if lease:
        problems = site_timing_problems(t)
        if problems:
            return "timings", "unsafe for absolute-consistency: " + "; ".join(problems)
    return None


def kv_replicas(cfg: SiteConfig) -> int:
    """Replicas of the lease bucket this site creates or expects: `nats.kv_replicas`, or
    when 0, R3 unless the mesh has fewer servers than that."""
    n = cfg.nats
    if n.kv_replicas:
        return n.kv_replicas
    if n.cores:
        return lease_replicas(n.cores)
    servers = len(n.routes) + 1 if n.mode == "embedded" else len(n.servers)
    return max(1, min(3, servers))
