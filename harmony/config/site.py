"""The site: one TOML file, its workloads, and the facts derived from it."""

from __future__ import annotations

from pathlib import Path

import msgspec

from harmony.config.base import Base
from harmony.config.drivers import DriverConfig
from harmony.config.exposure import MetricsConfig, SecurityConfig
from harmony.config.facts import PriceConfig
from harmony.config.nats import NatsConfig
from harmony.config.timings import Supervision, Timings
from harmony.config.topologies import TopologyConfig
from harmony.site_roles import lease_replicas
from harmony.strategies.labels import SiteFacts
from harmony.strategies.names import (
    DEFAULT_RECONCILE,
    DEFAULT_STRATEGY,
    ReconcilePolicy,
    StrategyName,
)


class WorkloadConfig(Base):
    name: str
    driver: DriverConfig
    topology: TopologyConfig
    strategy: StrategyName = DEFAULT_STRATEGY
    reconcile: ReconcilePolicy = DEFAULT_RECONCILE


class SiteConfig(Base):
    mesh: str
    site: str
    data_dir: str = ""
    """Relative paths are taken from the config file's folder. Default: ``./data/<site>``."""
    witness: bool = False
    labels: dict[str, str] = {}
    """What the site is (``region``, ``jurisdiction``, ``provider``, free keys): what
    workloads' constraints read and horizontal topologies spread over."""
    capacity: int | None = None
    """Copies of one workload this site takes (horizontal topologies); None: one."""
    price: PriceConfig | None = None
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

    def facts(self, alive: bool = True) -> SiteFacts:
        """What this site advertises, as the pure topologies read it (a `hook` price is
        not known until it runs: None)."""
        price = self.price.value if self.price is not None else None
        capacity = self.capacity if self.capacity is not None else 1
        return SiteFacts(self.site, self.labels, capacity, price, alive)


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
