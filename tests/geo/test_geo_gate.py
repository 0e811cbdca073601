"""GeoGate: the workload supervisor's facts about the sites, handed to `geo.admit`."""

from __future__ import annotations

from harmony.actors.geo_gate import GeoGate
from harmony.actors.messages import PeerInfo
from harmony.config import parse_config
from harmony.strategies.events import SitesBarred
from harmony.strategies.labels import constraints_digest, parse_constraints

CONFIG = """
mesh = "m"
site = "{site}"
labels = {{ jurisdiction = "{j}" }}
[[workloads]]
name = "ledger"
driver = {{ kind = "process", command = ["true"] }}
topology = {{ kind = "failover", primary = "eu1", standbys = ["us", "eu2"], {c} }}
"""
EU = """constraints = ['jurisdiction in ["EU"]']"""
DIGEST = constraints_digest(parse_constraints(['jurisdiction in ["EU"]']))


def gate(site: str, j: str, constraints: str = EU) -> GeoGate:
    cfg = parse_config(CONFIG.format(site=site, j=j, c=constraints))
    return GeoGate(cfg, cfg.workloads[0])


def peer(site: str, j: str, state: str = "alive", digest: str = DIGEST) -> PeerInfo:
    return PeerInfo(
        site=site,
        state=state,
        last_heartbeat_age=0.1,
        labels={"jurisdiction": j},
        constraints={"ledger": digest},
    )


def test_the_us_site_is_barred_and_says_the_workload_is_down_when_eu_is_gone() -> None:
    g = gate("us", "US")
    first = g.review([peer("eu1", "EU"), peer("eu2", "EU")])
    assert isinstance(first, SitesBarred) and set(first.barred) == {"us"}
    assert g.detail()["geo"] == "outside"
    assert g.review([peer("eu1", "EU"), peer("eu2", "EU")]) is None  # nothing changed
    g.peer_state("eu1", "silent")
    g.peer_state("eu2", "silent")
    down = g.review([peer("eu1", "EU"), peer("eu2", "EU")])  # the view may lag: states win
    assert down is not None and down.barred["us"].startswith("no eligible site is alive")
    assert g.detail() == {"geo": "down", "geo_reason": down.barred["us"]}


def test_an_eu_site_bars_the_us_peer_once_heard_and_refuses_moves_there() -> None:
    g = gate("eu2", "EU")
    assert g.review([]) is None and g.detail()["geo"] == "run"  # nothing barred yet
    never = PeerInfo(site="us", state="unknown")
    assert g.move_refusal("us", [never]) is not None  # labels unknown: refused
    barred = g.review([peer("us", "US"), peer("eu1", "EU")])
    assert barred is not None and set(barred.barred) == {"us"}
    why = g.move_refusal("us", [peer("us", "US")])
    assert why is not None and "jurisdiction='US', outside jurisdiction in" in why
    assert g.move_refusal("eu1", [peer("eu1", "EU")]) is None


def test_a_peer_reading_other_constraints_makes_the_site_refuse() -> None:
    g = gate("eu1", "EU")
    other = constraints_digest(parse_constraints(['jurisdiction in ["EU", "US"]']))
    barred = g.review([peer("eu2", "EU", digest=other)])
    assert barred is not None and "constraints differ on eu2" in barred.barred["eu1"]
    assert g.detail()["geo"] == "refused"
    assert g.move_refusal("eu1", []) is not None


def test_a_workload_without_constraints_is_left_alone() -> None:
    g = gate("us", "US", "constraints = []")
    assert g.review([peer("eu1", "EU", digest=constraints_digest(()))]) is None
    assert g.detail() == {} and g.move_refusal("us", []) is None
