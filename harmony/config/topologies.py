"""A workload's ``topology``: which sites may run it."""

from __future__ import annotations

from harmony.config.base import Base


class FailoverTopologyConfig(Base, tag="failover", tag_field="kind"):
    primary: str
    standbys: list[str] = []


TopologyConfig = FailoverTopologyConfig
