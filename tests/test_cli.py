"""The `harmony` command: help, exit codes, refusing bad configs before starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.commands import harmony

from harmony.mesh.ports import free_ports
from harmony.sim.launch import pids_mentioning


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


# ---------------------------------------------------------------------------- config check
SITE = """\
mesh = "prod"
site = "{site}"
[timings]
lease_ttl = {ttl}
[[workloads]]
name = "ledger"
driver = {{ kind = "process", command = ["sleep", "600"] }}
topology = {{ kind = "failover", primary = "a", standbys = ["b"] }}
"""


def site_file(tmp_path: Path, site: str, ttl: float = 8.0, body: str = SITE) -> str:
    path = tmp_path / f"{site}.toml"
    path.write_text(body.format(site=site, ttl=ttl))
    return str(path)


def test_config_check_help_says_what_is_checked() -> None:
    out = harmony("config", "check", "--help")
    assert out.returncode == 0
    for words in ("without starting anything", "fence_margin > stop_grace", "exit codes", "2 a"):
        assert words in out.stdout
    assert harmony("config").returncode == 2
    assert "config" in harmony("--help").stdout


def test_config_check_of_a_good_file_shows_the_inequality_and_starts_nothing(
    tmp_path: Path,
) -> None:
    out = harmony("config", "check", site_file(tmp_path, "a"))
    assert out.returncode == 0, out.stderr
    assert "site a of mesh prod" in out.stdout
    assert "workload ledger: absolute-consistency, process driver, primary a" in out.stdout
    assert "lease: lease_ttl 8 s, renew_interval 1 s, fence_margin 2.5 s" in out.stdout
    assert (
        "safe: fence_margin 2.5 s > stop_grace 1.5 + fence_slack 0.5 + clock allowance "
        "0.016 s (margin 0.48 s)"
    ) in out.stdout
    assert not (tmp_path / "data").exists()
    assert pids_mentioning(str(tmp_path)) == []


def test_config_check_names_file_field_and_the_unsafe_inequality(tmp_path: Path) -> None:
    unsafe = SITE.replace("[timings]\n", "[timings]\nclock_skew = 0.6\n")
    bad = site_file(tmp_path, "a", body=unsafe)
    typo = site_file(tmp_path, "b", body=SITE.replace("lease_ttl", "lease_tll"))
    out = harmony("config", "check", bad, typo)
    assert out.returncode == 2 and out.stdout == ""
    assert f"{bad}: timings: unsafe for absolute-consistency" in out.stderr
    assert "clock allowance (2 x drift x lease_ttl + skew = 0.616 s)" in out.stderr
    assert f"{typo}: timings: Object contains unknown field `lease_tll`" in out.stderr
    assert "2 problems" in out.stderr
    assert not (tmp_path / "data").exists()


def test_config_check_cross_checks_the_files_of_a_mesh(tmp_path: Path) -> None:
    a, b = site_file(tmp_path, "a"), site_file(tmp_path, "b")
    out = harmony("config", "check", a, b)
    assert out.returncode == 0, out.stderr
    assert "mesh prod: 2 files agree (sites a, b; workloads ledger)" in out.stdout

    b4 = site_file(tmp_path, "b", ttl=6.0)
    out = harmony("config", "check", a, b4)
    assert out.returncode == 2
    assert f"timings.lease_ttl: differs: 8 s in {a}; 6 s in {b4}" in out.stderr
    assert "every site of a mesh must use the same lease timings" in out.stderr

    other = site_file(
        tmp_path,
        "c",
        body=SITE.replace('"prod"', '"test"').replace('standbys = ["b"]', 'standbys = ["c"]'),
    )
    lonely = site_file(tmp_path, "b", body='mesh = "prod"\nsite = "{site}"\n')
    out = harmony("config", "check", a, lonely, other)
    assert out.returncode == 2
    assert f"mesh: differs: 'prod' in {a}, {lonely}; 'test' in {other}" in out.stderr
    assert f"workload 'ledger' topology.standbys: differs: ['b'] in {a}; ['c'] in {other}" in (
        out.stderr
    )
    assert f"{lonely}: workloads: no workload 'ledger', but {a} places it on site 'b'" in (
        out.stderr
    )
