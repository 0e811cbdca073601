"""Site configuration: one TOML file per site, decoded by msgspec into typed structs.

A file is either fully valid or refused: `load_config` raises `ConfigError` naming the file,
the field (as a dotted path) and the reason, and the agent never starts half-configured.

One idea per module: `base` (the error, the name rules), `nats`, `exposure` (``[security]``,
``[metrics]``), `timings` (``[timings]``, ``[supervision]``), `drivers`, `topologies`,
`facts` (a site's labels, capacity and price), `site` (the site and its workloads),
`validate` (what the types cannot say) and `load` (TOML in, a valid `SiteConfig` out).
Import from here: the names below are the interface.
"""

from harmony.config.base import ENV_NAME_RE, NAME_RE, Base, ConfigError
from harmony.config.drivers import DriverConfig, HooksDriverConfig, ProcessDriverConfig
from harmony.config.exposure import (
    ROSTER_FILE,
    SECURITY_FILES,
    MetricsConfig,
    SecurityConfig,
    check_security_files,
    is_loopback_host,
)
from harmony.config.facts import LABEL_KEY_RE, LABEL_VALUE_RE, MAX_LABELS, PriceConfig
from harmony.config.load import NAMED, load_config, parse_config, read_source
from harmony.config.nats import NatsConfig
from harmony.config.site import SiteConfig, WorkloadConfig, kv_replicas
from harmony.config.timings import MAX_HEARTBEAT_INTERVAL, Supervision, Timings, timing_problem
from harmony.config.topologies import (
    CostTopologyConfig,
    FailoverTopologyConfig,
    HorizontalTopologyConfig,
    TopologyConfig,
    constraints_of,
    kind_of,
    topology_problem,
)
from harmony.config.validate import insecure_problem, validate

__all__ = [
    "ENV_NAME_RE",
    "LABEL_KEY_RE",
    "LABEL_VALUE_RE",
    "MAX_HEARTBEAT_INTERVAL",
    "MAX_LABELS",
    "NAMED",
    "NAME_RE",
    "ROSTER_FILE",
    "SECURITY_FILES",
    "Base",
    "ConfigError",
    "CostTopologyConfig",
    "DriverConfig",
    "FailoverTopologyConfig",
    "HooksDriverConfig",
    "HorizontalTopologyConfig",
    "MetricsConfig",
    "NatsConfig",
    "PriceConfig",
    "ProcessDriverConfig",
    "SecurityConfig",
    "SiteConfig",
    "Supervision",
    "Timings",
    "TopologyConfig",
    "WorkloadConfig",
    "check_security_files",
    "constraints_of",
    "insecure_problem",
    "is_loopback_host",
    "kind_of",
    "kv_replicas",
    "load_config",
    "parse_config",
    "read_source",
    "timing_problem",
    "topology_problem",
    "validate",
]
