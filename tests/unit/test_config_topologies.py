"""Issue 12's configuration: a site's labels, capacity and price; every topology kind's
constraints; the horizontal and cost topologies. A good file decodes into the pure
modules' types; each bad value is refused naming the file, the exact field and the reason."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harmony.config import (
    LABEL_KEY_RE,
    LABEL_VALUE_RE,
    MAX_LABELS,
    ConfigError,
    CostTopologyConfig,
    FailoverTopologyConfig,
    HorizontalTopologyConfig,
    load_config,
    parse_config,
)
from harmony.strategies.cost import CostSpec
from harmony.strategies.horizontal import HorizontalSpec
from harmony.strategies.labels import SiteFacts, parse_constraints

GOOD = """
mesh = "prod"
site = "paris"
capacity = 2
labels = { region = "eu-west", jurisdiction = "EU", provider = "ovh" }

[price]
value = 0.12

[[workloads]]
name = "ledger"
driver = { kind = "process", command = ["./ledger"] }
topology = { kind = "failover", primary = "paris", standbys = ["berlin"], constraints = ['jurisdiction in ["EU", "CH"]'] }

[[workloads]]
name = "web"
strategy = "split-brain-allowed"
driver = { kind = "process", command = ["./web"] }
[workloads.topology]
kind = "horizontal"
sites = ["paris", "berlin", "virginia"]
replicas = 3
spread_label = "region"
max_skew = 2
weights = { eu-west = 2.0, us-east = 1.0 }
max_unavailable = 1
settle = 20.0
move_timeout = 120.0
constraints = ['provider != "x"']

[[workloads]]
name = "batch"
driver = { kind = "process", command = ["./batch"] }
[workloads.topology]
kind = "cost"
sites = ["paris", "berlin"]
min_saving = 0.05
hold = 120.0
cooldown = 600.0
"""  # noqa: E501 -- one TOML line, as a user writes it


def test_a_site_with_labels_capacity_and_price_and_every_kind_of_topology(tmp_path: Path) -> None:
    path = tmp_path / "paris.toml"
    path.write_text(GOOD)
    cfg = load_config(path)
    assert cfg.labels == {"region": "eu-west", "jurisdiction": "EU", "provider": "ovh"}
    assert (cfg.capacity, cfg.price is not None and cfg.price.value) == (2, 0.12)
    assert cfg.facts() == SiteFacts("paris", cfg.labels, capacity=2, price=0.12)
    failover, horizontal, cost = (w.topology for w in cfg.workloads)
    assert isinstance(failover, FailoverTopologyConfig)
    assert failover.constraints == ['jurisdiction in ["EU", "CH"]']
    assert failover.sites == ("paris", "berlin")
    assert isinstance(horizontal, HorizontalTopologyConfig)
    assert horizontal.spec() == HorizontalSpec(
        replicas=3,
        spread_label="region",
        max_skew=2,
        weights=MappingProxyType({"eu-west": 2.0, "us-east": 1.0}),
        max_unavailable=1,
        settle=20.0,
        move_timeout=120.0,
        constraints=parse_constraints(['provider != "x"']),
    )
    assert isinstance(cost, CostTopologyConfig)
    assert cost.spec() == CostSpec(min_saving=0.05, hold=120.0, cooldown=600.0)
    # every kind lists its sites the way the failover-only code reads them
    assert [(t.primary, list(t.standbys)) for t in (failover, horizontal, cost)] == [
        ("paris", ["berlin"]),
        ("paris", ["berlin", "virginia"]),
        ("paris", ["berlin"]),
    ]


def test_defaults_leave_a_site_unlabelled_and_the_topologies_at_the_specs_values() -> None:
    cfg = parse_config('mesh = "m"\nsite = "a"\n')
    assert (cfg.labels, cfg.capacity, cfg.price) == ({}, None, None)
    assert cfg.facts() == SiteFacts("a")  # capacity None: one copy of a workload
    h = HorizontalTopologyConfig(sites=["a"], replicas=1)
    assert h.spec() == HorizontalSpec(replicas=1)
    c = CostTopologyConfig(sites=["a"], min_saving=0.0)
    assert (c.hold, c.cooldown, c.constraints) == (300.0, 1800.0, [])


def test_a_relative_price_hook_is_taken_from_the_files_folder(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text('mesh = "m"\nsite = "a"\n[price]\nhook = "bin/spot-price"\n')
    cfg = load_config(path)
    assert cfg.price is not None
    assert (cfg.price.hook, cfg.price.value, cfg.price.interval) == (
        str(tmp_path / "bin" / "spot-price"),
        None,
        60.0,
    )
    path.write_text('mesh = "m"\nsite = "a"\n[price]\nhook = "/opt/p"\ninterval = 30.0\n')
    assert load_config(path).price == type(cfg.price)(hook="/opt/p", interval=30.0)


H = 'sites = ["paris", "berlin", "virginia"]'
C = "min_saving = 0.05"
BAD = [
    # site facts
    ('provider = "ovh" }', 'provider = "o v h" }', "labels.provider", "not a valid label value"),
    ('provider = "ovh" }', '"1st" = "x" }', "labels", "'1st' is not a valid label name"),
    ('provider = "ovh" }', "provider = 3 }", "labels[...]", "Expected `str`, got `int`"),
    (
        'labels = { region = "eu-west", jurisdiction = "EU", provider = "ovh" }',
        "labels = { " + ", ".join(f'k{i} = "v"' for i in range(MAX_LABELS + 1)) + " }",
        "labels",
        f"at most {MAX_LABELS}",
    ),
    ("capacity = 2", "capacity = 0", "capacity", "must be > 0"),
    ("capacity = 2", "capacity = 1.5", "capacity", "Expected `int | null`"),
    ("value = 0.12", 'value = 0.12\nhook = "/opt/p"', "price", "exactly one of value"),
    ("value = 0.12", "interval = 30.0", "price", "exactly one of value"),
    ("value = 0.12", "value = -0.5", "price.value", "must be a number >= 0"),
    ("value = 0.12", "value = nan", "price.value", "must be a number >= 0"),
    ("value = 0.12", 'hook = "/opt/p"\ninterval = 0.0', "price.interval", "must be a number"),
    ("value = 0.12", "value = 0.12\ncost = 1", "price", "unknown field `cost`"),
    # constraints, on every kind
    (
        'constraints = [\'jurisdiction in ["EU", "CH"]\']',
        "constraints = ['jurisdiction in [\"EU\", \"CH\"]', 'jurisdiction = EU']",
        "workloads[0].topology.constraints[1]",
        "'jurisdiction = EU' is not a constraint; write label in",
    ),
    (
        "constraints = ['provider != \"x\"']",
        "constraints = ['provider in []']",
        "workloads[1].topology.constraints[0]",
        "an empty list",
    ),
    (
        "cooldown = 600.0",
        "cooldown = 600.0\nconstraints = ['tier in [gold]']",
        "workloads[2].topology.constraints[0]",
        "list items must be quoted strings",
    ),
    # horizontal
    (H, "", "workloads[1].topology", "missing required field `sites`"),
    (H, "sites = []", "workloads[1].topology.sites", "name at least one site"),
    (H, 'sites = ["paris", "berlin", "paris"]', "workloads[1].topology.sites", "appears twice"),
    (H, 'sites = ["paris", "ber lin"]', "workloads[1].topology.sites[1]", "not a valid site"),
    ("replicas = 3", "replicas = -1", "workloads[1].topology.replicas", "must be >= 0"),
    ("max_skew = 2", "max_skew = 0", "workloads[1].topology.max_skew", "must be >= 1"),
    (
        "max_unavailable = 1",
        "max_unavailable = 0",
        "workloads[1].topology.max_unavailable",
        "must be >= 1",
    ),
    (
        'spread_label = "region"',
        'spread_label = "re gion"',
        "workloads[1].topology.spread_label",
        "not a valid label name",
    ),
    ("us-east = 1.0", "us-east = 0.0", "workloads[1].topology.weights.us-east", "must be > 0"),
    ("us-east = 1.0", '"us east" = 1.0', "workloads[1].topology.weights.us east", "not a valid"),
    (
        'spread_label = "region"',
        'spread_label = ""',
        "workloads[1].topology.weights.eu-west",
        "not one of the sites (without spread_label",
    ),
    ("settle = 20.0", "settle = -1.0", "workloads[1].topology.settle", "seconds >= 0"),
    ("move_timeout = 120.0", "move_timeout = 0.0", "workloads[1].topology.move_timeout", "> 0"),
    ("max_skew = 2", "max_skew = 2\nprimary = 'paris'", "workloads[1].topology", "`primary`"),
    # cost
    (C, "", "workloads[2].topology", "missing required field `min_saving`"),
    (C, "min_saving = -0.01", "workloads[2].topology.min_saving", "must be a number >= 0"),
    ("hold = 120.0", "hold = inf", "workloads[2].topology.hold", "seconds >= 0"),
    ("cooldown = 600.0", "cooldown = -1.0", "workloads[2].topology.cooldown", "seconds >= 0"),
    (
        'sites = ["paris", "berlin"]\nmin',
        'sites = ["paris", "paris"]\nmin',
        "workloads[2].topology.sites",
        "appears twice",
    ),
    # the kinds
    (
        'kind = "cost"',
        'kind = "geo"',
        "workloads[2].topology.kind",
        "valid: failover, horizontal, cost (geo: `constraints` on any of them)",
    ),
    (
        'kind = "failover", primary',
        'kind = "failover", sites = ["a"], primary',
        "workloads[0].topology",
        "unknown field `sites`",
    ),
]


@pytest.mark.parametrize(("old", "new", "field", "reason"), BAD, ids=[b[3][:40] for b in BAD])
def test_each_bad_value_names_the_file_the_field_and_why(
    tmp_path: Path, old: str, new: str, field: str, reason: str
) -> None:
    assert GOOD.count(old) == 1, old
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.replace(old, new))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.file == str(path)
    assert e.value.field == field
    assert reason in e.value.reason


labels = st.from_regex(LABEL_KEY_RE, fullmatch=True)
values = st.from_regex(LABEL_VALUE_RE, fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(labels, values, max_size=MAX_LABELS))
def test_any_plain_labels_are_accepted_and_advertised_as_written(found: dict[str, str]) -> None:
    import msgspec

    text = 'mesh = "m"\nsite = "a"\n' + msgspec.toml.encode({"labels": found}).decode()
    cfg = parse_config(text)
    assert cfg.labels == found
    assert dict(cfg.facts().labels) == found


def readme_example(heading: str) -> str:
    """The first TOML block after `heading` in the README's configuration reference."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split(f"\n{heading}\n", 1)[1]
    return section.split("```toml\n", 1)[1].split("```", 1)[0]


def test_the_readme_reference_is_a_valid_site(tmp_path: Path) -> None:
    path = tmp_path / "paris.toml"
    path.write_text(readme_example("## Configuration reference"))
    assert [w.name for w in load_config(path).workloads] == ["ledger", "legacy-db"]


def test_the_readme_example_of_labels_and_topologies_is_a_valid_site(tmp_path: Path) -> None:
    path = tmp_path / "paris.toml"
    path.write_text(readme_example("### Labels, constraints and topologies"))
    cfg = load_config(path)
    assert cfg.labels["jurisdiction"] == "EU" and cfg.capacity == 2
    assert cfg.price is not None and cfg.price.hook == str(tmp_path / "bin" / "spot-price")
    kinds = [type(w.topology) for w in cfg.workloads]
    assert kinds == [FailoverTopologyConfig, HorizontalTopologyConfig, CostTopologyConfig]
