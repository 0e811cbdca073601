"""A workload's ``driver``: how its agent starts, stops and watches it."""

from __future__ import annotations

from typing import Literal

from harmony.config.base import Base


class ProcessDriverConfig(Base, tag="process", tag_field="kind"):
    command: list[str]
    restart: Literal["always", "on-failure", "never"] = "on-failure"
    restart_delay: float = 0.5
    env: dict[str, str] = {}
    pass_env: list[str] = []
    """Names of the agent's environment variables the workload also gets (see README: a
    workload's environment is an allowlist, not the agent's whole environment)."""
    cwd: str = ""


class HooksDriverConfig(Base, tag="hooks", tag_field="kind"):
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
