"""Site labels and constraints: parsing (with clear errors) and eligibility with reasons."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harmony.strategies import ConstraintError, SiteFacts, eligible, parse_constraints
from harmony.strategies.labels import parse_constraint

EU = SiteFacts("paris", {"jurisdiction": "EU", "provider": "x"})
CH = SiteFacts("zurich", {"jurisdiction": "CH", "provider": "y"})
US = SiteFacts("ohio", {"jurisdiction": "US", "provider": "y"})
BARE = SiteFacts("bare")


@pytest.mark.parametrize(
    ("text", "key", "op", "values"),
    [
        ('jurisdiction in ["EU"]', "jurisdiction", "in", ("EU",)),
        ("jurisdiction in ['EU', \"CH\"]", "jurisdiction", "in", ("EU", "CH")),
        ('  region  not   in  ["us-east" ,"x"] ', "region", "not in", ("us-east", "x")),
        ('provider != "x"', "provider", "!=", ("x",)),
        ("tier=='gold'", "tier", "==", ("gold",)),
    ],
)
def test_the_four_forms_parse(text: str, key: str, op: str, values: tuple[str, ...]) -> None:
    c = parse_constraint(text)
    assert (c.key, c.op, c.values, c.text) == (key, op, values, text.strip())


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("jurisdiction = EU", "is not a constraint"),
        ('jurisdiction in "EU"', "is not a constraint"),
        ("jurisdiction in [EU]", "quoted strings"),
        ('jurisdiction in ["EU" "CH"]', "quoted strings"),
        ("jurisdiction in []", "empty list"),
        ("provider != x", "is not a constraint"),
        ('"provider" == "x"', "is not a constraint"),
        ("", "is not a constraint"),
    ],
)
def test_bad_syntax_is_refused_with_the_text_and_the_grammar(text: str, says: str) -> None:
    with pytest.raises(ConstraintError, match=says) as err:
        parse_constraint(text)
    assert repr(text) in str(err.value)


def test_an_unknown_label_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ConstraintError, match=r"no site has a label 'jurisdcition'.*provider"):
        parse_constraints(['jurisdcition in ["EU"]'], known_labels={"jurisdiction", "provider"})


def test_eligible_keeps_order_and_says_which_constraint_excluded_each_site() -> None:
    cs = parse_constraints(['jurisdiction in ["EU", "CH"]', 'provider != "x"'])
    kept, why = eligible([EU, CH, US, BARE], cs)
    assert [s.name for s in kept] == ["zurich"]
    assert why["paris"] == "site paris has provider='x', outside provider != \"x\""
    assert why["ohio"].endswith('outside jurisdiction in ["EU", "CH"]')
    assert why["bare"] == "site bare has no label 'jurisdiction' (constraint " + cs[0].text + ")"


def test_a_missing_label_satisfies_no_constraint_not_even_a_negative_one() -> None:
    for text in ('jurisdiction != "US"', 'jurisdiction not in ["US"]'):
        kept, why = eligible([BARE, EU], parse_constraints([text]))
        assert [s.name for s in kept] == ["paris"] and "no label" in why["bare"]


def test_canonical_form_ignores_spacing_quotes_and_order() -> None:
    a = parse_constraint('jurisdiction in ["EU", "CH"]')
    b = parse_constraint("jurisdiction   in ['CH','EU', 'EU']")
    assert a.canonical == b.canonical and a.text != b.text


VALUES = st.sampled_from(["EU", "CH", "US", "x", "y"])
SITES = st.lists(
    st.builds(
        SiteFacts,
        name=st.sampled_from(["a", "b", "c", "d", "e"]),
        labels=st.dictionaries(st.sampled_from(["jurisdiction", "provider"]), VALUES),
    ),
    unique_by=lambda s: s.name,
)
CONSTRAINTS = st.lists(
    st.builds(
        lambda key, op, vals: (
            f"{key} {op} [{', '.join(repr(v) for v in vals)}]"
            if "in" in op
            else f"{key} {op} {vals[0]!r}"
        ),
        st.sampled_from(["jurisdiction", "provider"]),
        st.sampled_from(["in", "not in", "==", "!="]),
        st.lists(VALUES, min_size=1, max_size=3),
    ),
    max_size=3,
)


@settings(max_examples=300)
@given(sites=SITES, texts=CONSTRAINTS)
def test_eligible_partitions_the_sites_by_the_constraints(
    sites: list[SiteFacts], texts: list[str]
) -> None:
    cs = parse_constraints(texts)
    kept, why = eligible(sites, cs)
    assert {s.name for s in kept} | set(why) == {s.name for s in sites}
    assert not {s.name for s in kept} & set(why)
    for s in kept:
        assert all(c.holds(s) for c in cs)
    for s in sites:
        if s.name in why:
            assert any(not c.holds(s) and c.text in why[s.name] for c in cs)
