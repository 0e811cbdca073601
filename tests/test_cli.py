"""The `harmony` command: help, exit codes, refusing bad configs before starting anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harmony.mesh.ports import free_ports
from harmony.sim.launch import pids_mentioning


def harmony(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harmony", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_help_lists_commands_and_exit_codes() -> None:
    out = harmony("--help")
    assert out.returncode == 0
    for word in ("agent", "status", "demo", "exit codes"):
        assert word in out.stdout
    agent = harmony("agent", "--help")
    assert agent.returncode == 0 and "--config" in agent.stdout and "--witness" in agent.stdout


def test_no_command_prints_help_and_exits_2() -> None:
    out = harmony()
    assert out.returncode == 2 and "commands:" in out.stdout


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        (
            'mesh = "m"\nsite = "a"\n[timings]\nheartbeat_interval = "x"\n',
            "timings.heartbeat_interval",
            "Expected `float`, got `str`",
        ),
        ('mesh = "m"\n', "site", "missing required field"),
        (
            'mesh = "m"\nsite = "a"\n[[workloads]]\nname = "w"\n'
            'driver = { kind = "vm" }\ntopology = { kind = "failover", primary = "a" }\n',
            "workloads[0].driver.kind",
            "Invalid value 'vm'",
        ),
    ],
)
def test_agent_refuses_a_bad_config_and_starts_nothing(
    tmp_path: Path, body: str, field: str, reason: str
) -> None:
    path = tmp_path / "site.toml"
    path.write_text(body)
    out = harmony("agent", "--config", str(path), timeout=30)
    assert out.returncode == 2, out.stderr
    assert str(path) in out.stderr and field in out.stderr and reason in out.stderr
    assert not (tmp_path / "data").exists()  # nothing half-configured was created
    assert pids_mentioning(str(tmp_path)) == []


def test_agent_with_missing_config_file(tmp_path: Path) -> None:
    out = harmony("agent", "--config", str(tmp_path / "none.toml"))
    assert out.returncode == 2 and "cannot read" in out.stderr


def test_status_with_unreachable_nats_exits_3() -> None:
    (port,) = free_ports(1)
    out = harmony("status", "--server", f"nats://127.0.0.1:{port}", "--mesh", "m", "--timeout", "1")
    assert out.returncode == 3
    assert "no NATS server answered" in out.stderr


def test_status_needs_a_target() -> None:
    out = harmony("status")
    assert out.returncode == 2 and "--config" in out.stderr


def test_agent_with_unreachable_external_nats_exits_3(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    path = tmp_path / "site.toml"
    path.write_text(
        f'mesh = "m"\nsite = "a"\n[nats]\nmode = "external"\n'
        f'servers = ["nats://127.0.0.1:{port}"]\n'
    )
    out = harmony("agent", "--config", str(path), "--connect-timeout", "1")
    assert out.returncode == 3 and "no NATS server answered" in out.stderr


def test_agent_refuses_unsafe_lease_timings_naming_the_inequality(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(
        'mesh = "m"\nsite = "a"\n'
        "[timings]\nlease_ttl = 6.0\nfence_margin = 1.0\nstop_grace = 2.0\n"
        '[[workloads]]\nname = "db"\nstrategy = "absolute-consistency"\n'
        'driver = { kind = "process", command = ["sleep", "60"] }\n'
        'topology = { kind = "failover", primary = "a", standbys = ["b"] }\n'
    )
    out = harmony("agent", "--config", str(path))
    assert out.returncode == 2
    assert "timings: unsafe for absolute-consistency" in out.stderr
    assert "fence deadline (lease_ttl - fence_margin = 5 s) + stop_grace (2 s)" in out.stderr
    assert "must be < lease_ttl (6 s)" in out.stderr
    assert pids_mentioning(str(tmp_path)) == []
