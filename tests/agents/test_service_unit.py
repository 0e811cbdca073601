"""`harmony unit`: the systemd unit of a site's agent, checked by systemd's own verifier, and
its ExecStart run the way the unit's KillMode=mixed stops it (SIGTERM to the agent alone):
the agent stops its copies itself, within the unit's TimeoutStopSec, leaving nothing for
systemd's final SIGKILL."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support.commands import harmony
from support.waiting import wait_until

from harmony.config import FailoverTopologyConfig, ProcessDriverConfig, WorkloadConfig
from harmony.sim.launch import LocalMesh, pids_mentioning
from harmony.unit import drain_seconds, unit_for

MARK = "7391"
"""The workload is `sleep 7391`: the process table finds its copy by this."""


def directives(unit: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in unit.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def verify(path: Path) -> str:
    """What `systemd-analyze verify` says about the unit file (empty: nothing)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing (Debian package systemd)")
        pytest.skip("systemd-analyze is not installed")
    out = subprocess.run(
        [tool, "verify", "--man=no", str(path)], capture_output=True, text=True, timeout=60
    )
    # On a host without systemd as PID 1 it still parses the unit and checks ExecStart; the
    # lines about the host itself (no bus, no /run/systemd) are not about the unit.
    return "\n".join(line for line in out.stderr.splitlines() if path.name in line)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    mesh = LocalMesh(
        tmp_path,
        mesh="unit",
        sites=("a",),
        workloads=[
            WorkloadConfig(
                name="w",
                driver=ProcessDriverConfig(command=["sleep", MARK]),
                topology=FailoverTopologyConfig(primary="a"),
            )
        ],
    )
    return mesh.write_configs()["a"]


def test_the_unit_passes_systemds_verifier(site: Path, tmp_path: Path) -> None:
    unit = tmp_path / "harmony-unit-a.service"
    unit.write_text(unit_for(site))
    assert verify(unit) == ""
    # The verifier is not blind: a directive systemd does not know is reported.
    unit.write_text(unit.read_text().replace("[Service]\n", "[Service]\nKillModus=mixed\n"))
    assert "KillModus" in verify(unit)


def test_the_unit_leaves_stopping_to_the_agent(site: Path) -> None:
    d = directives(unit_for(site, user="root"))
    assert d["KillMode"] == "mixed"
    assert d["Restart"] == "on-failure"
    assert d["RestartPreventExitStatus"] == "2"  # a refused config is not retried forever
    assert d["Delegate"] == "yes"  # the driver's per-copy cgroups
    assert "ProtectControlGroups" not in d
    assert "User" not in d  # root: no User= line
    argv = shlex.split(d["ExecStart"])
    assert argv[-2:] == ["--config", str(site.resolve())]
    assert os.path.isabs(argv[0])


def test_the_unit_runs_as_the_owner_of_the_data_directory(site: Path) -> None:
    import pwd

    owner = pwd.getpwuid(os.stat(site).st_uid).pw_name
    d = directives(unit_for(site))
    assert d.get("User", "root") == owner


@pytest.mark.mesh
def test_exec_start_stops_cleanly_within_timeout_stop_sec(site: Path) -> None:
    d = directives(unit_for(site, user="root"))
    budget = float(d["TimeoutStopSec"])
    assert budget > drain_seconds_of(site)
    proc = subprocess.Popen(
        shlex.split(d["ExecStart"]),
        cwd="/",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_until(lambda: pids_mentioning(f"sleep {MARK}"), timeout=90, message="the copy runs")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # KillMode=mixed: the main process alone
        rc = proc.wait(timeout=budget)
        took = time.monotonic() - t0
        assert rc == 0, proc.stderr.read() if proc.stderr else ""
        assert took < budget
        # Nothing left for systemd's SIGKILL: the agent stopped its copy itself.
        assert pids_mentioning(f"sleep {MARK}") == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in pids_mentioning(f"sleep {MARK}"):
            os.kill(pid, signal.SIGKILL)


def drain_seconds_of(site: Path) -> float:
    from harmony.config import load_config

    return drain_seconds(load_config(site))


def test_cli_unit_refuses_a_bad_config_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('mesh = "m"\nsite = "a"\n[timings]\nlease_ttl = "long"\n')
    out = harmony("unit", "--config", str(bad))
    assert out.returncode == 2
    assert str(bad) in out.stderr and "lease_ttl" in out.stderr
    assert out.stdout == ""


def test_cli_version() -> None:
    out = harmony("--version")
    assert out.returncode == 0
    assert out.stdout.startswith("harmony ")
