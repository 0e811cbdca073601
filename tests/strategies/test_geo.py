"""geo: constraints narrow every topology; moves outside are refused; no eligible site: down."""

from __future__ import annotations

from itertools import product

from hypothesis import given, settings
from hypothesis import strategies as st

from harmony.strategies import (
    FailoverTopology,
    SiteFacts,
    failover_within,
    move_refusal,
    parse_constraints,
    where,
)
from harmony.strategies.geo import GEO_RULES, GeoFacts, Verdict, disagreement
from harmony.strategies.tables import first_match

SITES = (
    SiteFacts("paris", {"jurisdiction": "EU", "provider": "x"}),
    SiteFacts("berlin", {"jurisdiction": "EU", "provider": "y"}),
    SiteFacts("ohio", {"jurisdiction": "US", "provider": "y"}),
)
EU = parse_constraints(['jurisdiction in ["EU"]'])


def test_failover_standbys_outside_the_constraints_are_dropped() -> None:
    topo = FailoverTopology.of("ohio", "paris", "berlin", warm=True)
    cut = failover_within(topo, SITES, EU)
    assert cut.topology == FailoverTopology.of("paris", "berlin", warm=True)
    assert set(cut.excluded) == {"ohio"} and "jurisdiction in" in cut.reason


def test_a_topology_site_nobody_describes_is_excluded_too() -> None:
    cut = failover_within(FailoverTopology.of("paris", "mars"), SITES, EU)
    assert cut.topology == FailoverTopology.of("paris") and "no label" in cut.excluded["mars"]


def test_no_eligible_site_in_the_topology_gives_no_topology() -> None:
    cut = failover_within(FailoverTopology.of("ohio"), SITES, EU)
    assert cut.topology is None and "no site" in cut.reason


def test_a_move_outside_the_constraints_is_refused_naming_the_constraint() -> None:
    why = move_refusal("ohio", SITES, EU)
    assert why is not None and why.startswith("move to ohio refused")
    assert 'jurisdiction in ["EU"]' in why
    assert move_refusal("berlin", SITES, EU) is None
    assert move_refusal("mars", SITES, EU) == "move to mars refused: no such site is known"


def test_geo_rules_exhaustively() -> None:
    for n, alive in product(range(3), range(3)):
        if alive > n:
            continue
        verdict, _ = first_match(GEO_RULES, GeoFacts(n, alive))
        expected = Verdict.NOWHERE if n == 0 else Verdict.DOWN if alive == 0 else Verdict.RUN
        assert verdict is expected


def test_the_only_eu_site_lost_the_workload_stays_down_and_says_why() -> None:
    sites = [
        SiteFacts("paris", {"jurisdiction": "EU"}, alive=False),
        SiteFacts("ohio", {"jurisdiction": "US"}),
    ]
    d = where(sites, EU)
    assert d.verdict is Verdict.DOWN and d.sites == ()
    assert "stays down" in d.reason and "ohio" in d.reason
    back = where([SiteFacts("paris", {"jurisdiction": "EU"}), sites[1]], EU)
    assert back.verdict is Verdict.RUN and back.sites == ("paris",)


def test_sites_that_read_other_constraints_refuse_the_workload() -> None:
    same = parse_constraints(["jurisdiction   in ['EU']"])
    wider = parse_constraints(['jurisdiction in ["EU", "US"]'])
    assert disagreement(EU, {"berlin": same}) is None
    why = disagreement(EU, {"berlin": same, "ohio": wider, "paris": ()})
    assert why is not None and "ohio, paris" in why


LABELS = st.fixed_dictionaries(
    {},
    optional={
        "jurisdiction": st.sampled_from(["EU", "US", "CH"]),
        "provider": st.sampled_from(["x", "y"]),
    },
)
WORLD = st.lists(
    st.builds(SiteFacts, st.sampled_from("abcdefg"), LABELS, alive=st.booleans()),
    min_size=1,
    unique_by=lambda s: s.name,
)
TEXTS = st.lists(
    st.sampled_from(
        ['jurisdiction in ["EU", "CH"]', 'provider != "x"', 'jurisdiction not in ["US"]']
    ),
    max_size=2,
)


@settings(max_examples=300)
@given(sites=WORLD, texts=TEXTS, warm=st.booleans(), target=st.sampled_from("abcdefg"))
def test_no_site_outside_the_constraints_survives_any_geo_decision(
    sites: list[SiteFacts], texts: list[str], warm: bool, target: str
) -> None:
    cs = parse_constraints(texts)
    ok = {s.name for s in sites if all(c.holds(s) for c in cs)}
    names = [s.name for s in sites]
    cut = failover_within(FailoverTopology(names[0], tuple(names[1:]), warm), sites, cs)
    assert (cut.topology is None) == (not ok)
    if cut.topology is not None:
        assert set(cut.topology.sites) == ok and cut.topology.warm == warm
    d = where(sites, cs)
    assert set(d.sites) == {s.name for s in sites if s.alive and s.name in ok}
    assert (d.verdict is Verdict.RUN) == bool(d.sites)
    assert (move_refusal(target, sites, cs) is None) == (target in ok)
