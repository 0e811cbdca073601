"""Site configuration: valid files decode to typed structs; bad ones name file, field, reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from harmony.config import (
    ConfigError,
    ProcessDriverConfig,
    Timings,
    kv_replicas,
    load_config,
    parse_config,
)
from harmony.strategies import Params
from harmony.strategies.timing import fence_budget, site_timing_problems

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
        "Invalid enum value 'eventual'; valid: absolute-consistency, split-brain-allowed",
    ),
    (
        'strategy = "absolute-consistency"',
        'strategy = "split-brain-allowed"\nreconcile = "newest"',
        "workloads[0].reconcile",
        "Invalid enum value 'newest'; valid: keep-original, keep-replacement, best-score",
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
    (
        "heartbeat_interval = 0.25",
        "heartbeat_interval = 61.0",
        "timings.heartbeat_interval",
        "peers refuse a slower heartbeat",
    ),
    ("client_port = 4300", "client_port = 70000", "nats.client_port", "not a TCP port"),
    ("client_port = 4300", "kv_replicas = 7", "nats.kv_replicas", "0 (automatic) or 1 to 5"),
    ("heartbeat_interval = 0.25", "clock_skew = -0.1", "timings.clock_skew", "must be >= 0"),
    ("heartbeat_interval = 0.25", "ask_timeout = nan", "timings.ask_timeout", "not a number"),
    ("heartbeat_interval = 0.25", "stop_grace = inf", "timings.stop_grace", "not a number"),
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


def test_clock_skew_enters_the_safety_inequality() -> None:
    """Defaults: fence_margin 2.5 > stop_grace 1.5 + slack 0.5 + 2 x 0.001 x 8 = 2.016."""
    assert parse_config(GOOD.replace("heartbeat_interval = 0.25", "clock_skew = 0.4"))
    with pytest.raises(ConfigError) as e:
        parse_config(GOOD.replace("heartbeat_interval = 0.25", "clock_skew = 0.5"), "s.toml")
    assert e.value.field == "timings"
    assert "unsafe for absolute-consistency" in e.value.reason
    assert "clock allowance (2 x drift x lease_ttl + skew = 0.516 s)" in e.value.reason
    assert "use fence_margin > 2.52 s" in e.value.reason
    # only absolute-consistency workloads depend on it
    sba = GOOD.replace('"absolute-consistency"', '"split-brain-allowed"')
    assert parse_config(sba.replace("heartbeat_interval = 0.25", "clock_skew = 5.0"))


def test_fence_budget_is_the_inequality_in_numbers() -> None:
    b = fence_budget(Timings())
    assert (b.fence_margin, b.stop_grace, b.fence_slack) == (2.5, 1.5, 0.5)
    assert b.clock == pytest.approx(0.016) and b.margin == pytest.approx(0.484)
    assert str(b) == (
        "fence_margin 2.5 s > stop_grace 1.5 + fence_slack 0.5 + clock allowance 0.016 s "
        "(margin 0.48 s)"
    )
    assert (b.renew_attempts, b.min_renew_attempts) == (5, 3)
    skewed = fence_budget(Timings(clock_skew=0.5))
    assert skewed.margin < 0 and "fence_margin 2.5 s <= stop_grace" in str(skewed)


def test_kv_replicas_follow_the_servers_unless_set() -> None:
    cfg = parse_config(GOOD)  # one route: two servers
    assert kv_replicas(cfg) == 2
    three = GOOD.replace('routes = ["nats-route://10.0.0.2:6222"]', "routes = ['x', 'y', 'z']")
    assert kv_replicas(parse_config(three)) == 3
    assert kv_replicas(parse_config(GOOD.replace("client_port = 4300", "kv_replicas = 1"))) == 1


def test_default_timings_are_the_strategies_recommended_ones() -> None:
    """One home for the defaults: a site config without [timings] gives the core's `Params`."""
    assert Params.from_timings(Timings()) == Params()
    assert site_timing_problems(Timings()) == []


def test_every_configuration_file_is_read_one_way(tmp_path: Path) -> None:
    """Site config, roster and scenario: a file that cannot be read is named, with why."""
    from harmony.security.roster import load_roster
    from harmony.sim.scenario_file import ScenarioError, load_scenario

    missing = tmp_path / "nope.toml"
    cases = [
        (load_config, ConfigError, "cannot read: "),
        (load_roster, ConfigError, "cannot read the roster: "),
        (load_scenario, ScenarioError, "cannot read: "),
    ]
    for load, error, said in cases:
        with pytest.raises(error) as e:
            load(missing)
        assert str(e.value) == f"{missing}: {said}No such file or directory"
