"""Workload configs the mesh tests run: the example workload (which records what it does,
the ground truth of the safety checks) or a plain `sleep`."""

from __future__ import annotations

from pathlib import Path

from harmony.config import FailoverTopologyConfig, ProcessDriverConfig, WorkloadConfig
from harmony.sim.backend import EXAMPLE_WORKLOAD
from harmony.sim.records import LEDGER_ENV, RECORDS_ENV

WORKLOAD_CMD = EXAMPLE_WORKLOAD
"""``python -m harmony.sim.example_workload``."""


def workload(
    name: str,
    strategy: str,
    primary: str,
    standbys: list[str],
    truth: Path | None = None,
    command: list[str] | None = None,
    **kw: str,
) -> WorkloadConfig:
    """A workload running the example workload (or `command`); with `truth` (the mesh's
    work directory) every copy writes its records and its ledger rows there."""
    env = {}
    if truth is not None:
        env = {RECORDS_ENV: str(truth / "records" / f"{name}.jsonl")}
        env[LEDGER_ENV] = str(truth / "ledger.db")
        (truth / "records").mkdir(parents=True, exist_ok=True)
    return WorkloadConfig(
        name=name,
        strategy=strategy,  # type: ignore[arg-type]
        driver=ProcessDriverConfig(command=command or WORKLOAD_CMD, restart="never", env=env),
        topology=FailoverTopologyConfig(primary=primary, standbys=standbys),
        **kw,  # type: ignore[arg-type]
    )


def sleeper(name: str, primary: str, standbys: list[str]) -> WorkloadConfig:
    """A split-brain-allowed `sleep 600`: a copy that only has to exist."""
    return WorkloadConfig(
        name=name,
        driver=ProcessDriverConfig(command=["sleep", "600"]),
        topology=FailoverTopologyConfig(primary=primary, standbys=standbys),
        strategy="split-brain-allowed",
    )
