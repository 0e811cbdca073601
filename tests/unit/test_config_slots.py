"""A horizontal workload runs as slot workloads: the expansion every site derives from the
same file, the names it reserves, and what `validate` refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harmony.config import NAME_RE, ConfigError, FailoverTopologyConfig, load_config, parse_config
from harmony.config.slots import expand, horizontal_workloads, slot_workloads
from harmony.mesh.subjects import lease_bucket
from harmony.strategies.horizontal import slot_lease, slot_of

SITE = """
mesh = "prod"
site = "{site}"

[[workloads]]
name = "ledger"
driver = {{ kind = "process", command = ["./ledger"] }}
topology = {{ kind = "failover", primary = "a", standbys = ["b"] }}

[[workloads]]
name = "{name}"
driver = {{ kind = "process", command = ["./web"] }}
[workloads.topology]
kind = "horizontal"
sites = ["a", "b", "c", "d"]
replicas = {replicas}
constraints = ['provider != "x"']
"""


def site(name: str = "web", replicas: int = 3, at: str = "a") -> str:
    return SITE.format(site=at, name=name, replicas=replicas)


def test_each_slot_is_a_failover_workload_of_its_own_rotated_over_the_sites() -> None:
    cfg = parse_config(site())
    out = expand(cfg)
    assert [w.name for w in out.workloads] == ["ledger", "web--0", "web--1", "web--2"]
    tops = [w.topology for w in out.workloads[1:]]
    assert all(isinstance(t, FailoverTopologyConfig) for t in tops)
    assert [t.sites for t in tops] == [
        ("a", "b", "c", "d"),
        ("b", "c", "d", "a"),
        ("c", "d", "a", "b"),
    ]
    # the strategy, driver and constraints are the workload's
    web = cfg.workloads[1]
    for w in out.workloads[1:]:
        assert (w.strategy, w.driver, w.topology.constraints) == (
            web.strategy,
            web.driver,
            web.topology.constraints,
        )
    assert horizontal_workloads(cfg) == (web,)
    assert expand(out) == out  # nothing left to expand


def test_every_site_derives_the_same_slots_from_the_same_workload() -> None:
    slots = [expand(parse_config(site(at=s))).workloads for s in "abcd"]
    assert all(s == slots[0] for s in slots)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(NAME_RE, fullmatch=True), st.integers(0, 99))
def test_a_slot_name_is_a_valid_workload_and_bucket_name_and_parses_back(
    name: str, slot: int
) -> None:
    s = slot_lease(name, slot)
    bucket = lease_bucket("prod", s)
    if len(s) <= 63:
        assert NAME_RE.match(s) and NAME_RE.match(bucket.removeprefix("harmony-"))
    assert slot_of(s) == (name, slot)


def test_a_name_that_is_no_slot_is_not_parsed_as_one() -> None:
    assert [slot_of(n) for n in ("web", "web--", "--3", "web--01", "web-3", "w--x")] == [None] * 6


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (site(name="web--1"), "reserved for the slots of horizontal workloads"),
        (site(name="w" * 61, replicas=10), "too long for its slots' names"),
    ],
)
def test_validate_refuses_a_name_that_collides_with_a_slot(
    tmp_path: Path, text: str, reason: str
) -> None:
    path = tmp_path / "a.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.file == str(path)
    assert e.value.field == "workloads[1].name"
    assert reason in e.value.reason


def test_a_failover_workload_may_not_take_a_slots_name_either(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text(site().replace('name = "ledger"', 'name = "web--0"'))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.field == "workloads[0].name" and "reserved" in e.value.reason


def test_a_long_name_that_fits_its_slots_is_accepted() -> None:
    cfg = parse_config(site(name="w" * 60, replicas=10))
    assert slot_workloads(cfg.workloads[1])[-1].name == "w" * 60 + "--9"
