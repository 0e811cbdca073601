"""Site configuration: valid files decode to typed structs; bad ones name file, field, reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from harmony.config import ConfigError, ProcessDriverConfig, load_config, parse_config

GOOD = """
mesh = "prod"
site = "paris"
data_dir = "var/paris"

[nats]
client_port = 4300
routes = ["nats-route://10.0.0.2:6222"]

[timings]
heartbeat_interval = 0.25

[[workloads]]
name = "ledger"
strategy = "absolute-consistency"
driver = { kind = "process", command = ["./ledger", "--serve"] }
topology = { kind = "failover", primary = "paris", standbys = ["london"] }
"""


def test_good_file_decodes_into_typed_structs(tmp_path: Path) -> None:
    path = tmp_path / "paris.toml"
    path.write_text(GOOD)
    cfg = load_config(path)
    assert (cfg.mesh, cfg.site, cfg.nats.client_port) == ("prod", "paris", 4300)
    assert cfg.timings.heartbeat_interval == 0.25
    assert cfg.data_dir == str(tmp_path / "var" / "paris")  # relative to the file
    w = cfg.workloads[0]
    assert isinstance(w.driver, ProcessDriverConfig) and w.driver.command == ["./ledger", "--serve"]
    assert (w.topology.primary, w.topology.standbys) == ("paris", ["london"])
    assert cfg.source == str(path)


BAD = [
    (
        "heartbeat_interval = 0.25",
        'heartbeat_interval = "fast"',
        "timings.heartbeat_interval",
        "Expected `float`, got `str`",
    ),
    ('kind = "process"', 'kind = "docker"', "workloads[0].driver.kind", "Invalid value 'docker'"),
    ('site = "paris"', 'site = "paris"\ncolour = "blue"', "colour", "unknown field"),
    (
        'strategy = "absolute-consistency"',
        'strategy = "eventual"',
        "workloads[0].strategy",
        "Invalid enum value 'eventual'",
    ),
    ('site = "paris"', 'site = "par is"', "site", "not a valid name"),
    ('standbys = ["london"]', 'standbys = ["paris"]', "workloads[0].topology", "appears twice"),
    (
        "heartbeat_interval = 0.25",
        "heartbeat_interval = -1.0",
        "timings.heartbeat_interval",
        "must be > 0",
    ),
    ("heartbeat_interval = 0.25", "silent_after = 4.0", "timings.silent_after", "<= 3"),
    ("client_port = 4300", "client_port = 70000", "nats.client_port", "not a TCP port"),
    (
        'command = ["./ledger", "--serve"]',
        "command = []",
        "workloads[0].driver.command",
        "must not be empty",
    ),
]


@pytest.mark.parametrize(("old", "new", "field", "reason"), BAD, ids=[b[2] for b in BAD])
def test_bad_file_names_file_field_and_reason(
    tmp_path: Path, old: str, new: str, field: str, reason: str
) -> None:
    path = tmp_path / "bad.toml"
    assert old in GOOD
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.file == str(path)
    assert e.value.field == field
    assert reason in e.value.reason
    assert str(path) in str(e.value) and field in str(e.value)


def test_missing_required_field_and_bad_toml() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config('mesh = "m"\n', "x.toml")
    assert "site" in str(e.value) and "x.toml" in str(e.value)
    with pytest.raises(ConfigError) as e:
        parse_config("mesh = ", "y.toml")
    assert "not valid TOML" in e.value.reason


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "nope.toml")
    assert "cannot read" in e.value.reason


def test_duplicate_workloads_and_witness_with_workloads() -> None:
    dup = GOOD + GOOD[GOOD.index("[[workloads]]") :]
    with pytest.raises(ConfigError, match="duplicate workload name 'ledger'"):
        parse_config(dup)
    with pytest.raises(ConfigError, match="witness site runs no workloads"):
        parse_config(GOOD.replace('site = "paris"', 'site = "paris"\nwitness = true'))
