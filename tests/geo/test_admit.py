"""Issue 12, item 3 at run time: `geo.admit` (may this site run the workload?) and the
failover strategies obeying it (`SitesBarred`): a barred site never takes the lease nor runs
a copy, whatever its rank; barred peers are skipped; moves to a barred site are refused."""

from __future__ import annotations

from itertools import product

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant
from strategies.test_ac_world import SAFE, AbsoluteConsistencyMachine, run_until, safe_params
from support.lease_world import Node, World
from support.sba_world import SbaWorld

from harmony.strategies import Params
from harmony.strategies.commands import RecordEvent
from harmony.strategies.events import MoveRequested, SitesBarred
from harmony.strategies.geo import ADMIT_RULES, Admit, AdmitFacts, admit
from harmony.strategies.labels import SiteFacts, constraints_digest, parse_constraints
from harmony.strategies.state import Seen
from harmony.strategies.tables import first_match

EU = parse_constraints(['jurisdiction in ["EU"]'])
DIGEST = constraints_digest(EU)
TOPOLOGY = ("eu1", "us", "eu2")


def facts(alive: dict[str, bool] | None = None) -> dict[str, SiteFacts]:
    alive = alive or {}
    labels = {"eu1": "EU", "us": "US", "eu2": "EU"}
    return {
        s: SiteFacts(s, {"jurisdiction": j}, alive=alive.get(s, True)) for s, j in labels.items()
    }


# -- the table --------------------------------------------------------------------------------
def test_admit_rules_exhaustively() -> None:
    for disagree, outside, alive in product((False, True), (False, True), (0, 1, 2)):
        verdict, why = first_match(ADMIT_RULES, AdmitFacts(disagree, outside, alive))
        assert why
        if disagree:
            assert verdict is Admit.REFUSED
        elif not outside:
            assert verdict is Admit.RUN
        else:
            assert verdict is (Admit.DOWN if alive == 0 else Admit.OUTSIDE)


# -- the rule ---------------------------------------------------------------------------------
def test_a_site_outside_the_constraints_is_barred_and_says_why() -> None:
    a = admit("us", TOPOLOGY, facts(), EU, {})
    assert a.verdict is Admit.OUTSIDE and set(a.barred) == {"us"}
    assert "site us has jurisdiction='US', outside jurisdiction in" in a.reason
    down = admit("us", TOPOLOGY, facts({"eu1": False, "eu2": False}), EU, {})
    assert down.verdict is Admit.DOWN
    assert down.reason.startswith("no eligible site is alive: the workload stays down")
    never_heard = admit("us", TOPOLOGY, {"us": facts()["us"]}, EU, {})
    assert never_heard.verdict is Admit.DOWN  # EU sites never heard: not counted alive


def test_an_eligible_site_runs_and_bars_the_peers_outside() -> None:
    a = admit("eu2", TOPOLOGY, facts(), EU, {})
    assert a.verdict is Admit.RUN and set(a.barred) == {"us"}
    unknown = admit("eu2", TOPOLOGY, {"eu2": facts()["eu2"]}, EU, {})
    assert unknown.verdict is Admit.RUN and dict(unknown.barred) == {}  # deferred to


def test_sites_that_read_other_constraints_refuse_the_workload() -> None:
    wider = constraints_digest(parse_constraints(['jurisdiction in ["EU", "US"]']))
    a = admit("eu1", TOPOLOGY, facts(), EU, {"eu2": DIGEST, "us": wider})
    assert a.verdict is Admit.REFUSED and "constraints differ on us" in a.barred["eu1"]
    same = constraints_digest(parse_constraints(["jurisdiction in ['EU']"]))
    assert admit("eu1", TOPOLOGY, facts(), EU, {"eu2": same}).verdict is Admit.RUN
    outside_topology = admit("eu1", TOPOLOGY, facts(), EU, {"elsewhere": wider})
    assert outside_topology.verdict is Admit.RUN


@settings(max_examples=300, deadline=None)
@given(
    labels=st.lists(st.sampled_from(["EU", "US", "CH", None]), min_size=1, max_size=6),
    alive=st.lists(st.booleans(), min_size=6, max_size=6),
    heard=st.lists(st.booleans(), min_size=6, max_size=6),
    me=st.integers(0, 5),
)
def test_admit_runs_exactly_the_sites_inside(
    labels: list[str | None], alive: list[bool], heard: list[bool], me: int
) -> None:
    names = tuple(f"s{i}" for i in range(len(labels)))
    site = names[me % len(names)]
    known = {
        n: SiteFacts(n, {} if j is None else {"jurisdiction": j}, alive=alive[i])
        for i, (n, j) in enumerate(zip(names, labels, strict=True))
        if heard[i] or n == site
    }
    a = admit(site, names, known, EU, {})
    inside = known[site].labels.get("jurisdiction") == "EU"
    assert (a.verdict is Admit.RUN) == inside
    for name, why in a.barred.items():  # only sites known to be outside are barred
        assert name in known and known[name].labels.get("jurisdiction") != "EU", why


# -- absolute-consistency ---------------------------------------------------------------------
class GeoWorld(World):
    """The lease world with some sites barred: every site hears `SitesBarred` at boot."""

    barred: dict[str, str]

    def boot(self, name: str) -> None:
        super().boot(name)
        self.feed(name, SitesBarred(self.barred))

    def check(self) -> None:
        super().check()
        for name in self.barred:
            proc = self.nodes[name].proc
            assert proc is None, f"a copy on barred site {name}: {proc}"


def geo_world(n: int, barred: dict[str, str], params: Params = SAFE, **kw: object) -> GeoWorld:
    GeoWorld.barred = barred
    options = {"fence_slack": 0.5, "request_timeout": 0.5, **kw}
    return GeoWorld(n, params, **options)  # type: ignore[arg-type]


def test_ac_a_barred_standby_never_takes_over_and_the_next_eligible_one_does() -> None:
    w = geo_world(3, {"s1": "outside"})  # s0 EU, s1 US (rank 1), s2 EU
    run_until(w, lambda: w.active_sites() == ["s0"], 3.0)
    w.crash("s0")
    run_until(w, lambda: w.active_sites() == ["s2"], SAFE.lease_ttl + 4 * SAFE.rank_delay + 2)
    w.crash("s2")
    w.settle(4 * SAFE.lease_ttl)  # only the barred site is up: nothing runs, ever
    assert w.active_sites() == [] and w.nodes["s1"].proc is None
    us = w.nodes["s1"].decision
    assert us is not None and us.state.lease.seen is Seen.GONE  # it knows, and stays out
    w.boot("s2")
    run_until(w, lambda: w.active_sites() == ["s2"], 2 * SAFE.lease_ttl)


def test_ac_a_holder_that_becomes_barred_stops_and_hands_the_lease_on() -> None:
    w = World(3, SAFE, fence_slack=0.5, request_timeout=0.5)
    run_until(w, lambda: w.active_sites() == ["s0"], 3.0)
    for name in w.names:
        w.feed(name, SitesBarred({"s0": "constraints differ on s2"}))
    w.drive("s0")  # the workload stops promptly on SIGTERM; then the lease is released
    took = run_until(w, lambda: w.active_sites() == ["s1"], 5.0)
    assert took < SAFE.lease_ttl  # handed over, not left to expire
    assert w.nodes["s0"].proc is None


def test_a_move_to_a_barred_site_is_refused_naming_why() -> None:
    w = geo_world(3, {"s1": "site s1 has jurisdiction='US', outside jurisdiction in [\"EU\"]"})
    decision = w.nodes["s0"].decision
    assert decision is not None
    d = w.strategy.step(decision.state, MoveRequested("s1"), w.now)
    refused = [c for c in d.commands if isinstance(c, RecordEvent) and c.kind == "move-refused"]
    assert refused and "jurisdiction='US'" in refused[0].reason
    assert d.state.topology == decision.state.topology


class GeoMachine(AbsoluteConsistencyMachine):
    """The random faults of the lease world, with random sites barred: no copy ever runs
    on a barred site (checked after every step), and after the heal exactly one eligible
    site runs it when one is up."""

    @initialize(
        n=st.integers(2, 5),
        timing=safe_params(),
        warm=st.booleans(),
        barred=st.sets(st.integers(0, 4)),
    )
    def setup(  # type: ignore[override]
        self, n: int, timing: tuple[Params, float, float], warm: bool, barred: set[int]
    ) -> None:
        params, slack, timeout = timing
        GeoWorld.barred = {f"s{i}": "outside" for i in barred if i < n}
        self.world = GeoWorld(n, params, fence_slack=slack, request_timeout=timeout, warm=warm)

    @invariant()
    def nothing_outside(self) -> None:
        w = getattr(self, "world", None)
        if w is not None:
            assert not set(w.active_sites()) & set(GeoWorld.barred)

    def eligible(self, node: Node) -> bool:
        """A barred site is never eligible, whatever else holds."""
        return super().eligible(node) and node.name not in GeoWorld.barred


GeoMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestGeoMachine = GeoMachine.TestCase


# -- split-brain-allowed ----------------------------------------------------------------------
class GeoSbaWorld(SbaWorld):
    barred: dict[str, str]

    def boot(self, name: str) -> None:
        super().boot(name)
        self.feed(name, SitesBarred(self.barred))
        assert all(self.nodes[b].proc is None for b in self.barred)


def test_sba_a_barred_site_never_runs_a_copy_whatever_its_rank() -> None:
    GeoSbaWorld.barred = {"s1": "outside"}
    w = GeoSbaWorld(3, Params())
    w.settle()
    assert w.running_in(0) == ["s0"]
    w.crash("s0")
    w.settle()
    assert w.running_in(0) == ["s2"]  # not s1, which ranks before it
    w.crash("s2")
    w.settle()
    assert w.running_in(0) == [] and w.nodes["s1"].proc is None
    w.boot("s2")
    w.settle()
    assert w.running_in(0) == ["s2"]


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(2, 5),
    barred=st.sets(st.integers(0, 4)),
    steps=st.lists(st.tuples(st.sampled_from(["crash", "boot", "cut", "heal"]), st.integers(0, 4))),
)
def test_sba_no_copy_outside_under_crashes_and_partitions(
    n: int, barred: set[int], steps: list[tuple[str, int]]
) -> None:
    GeoSbaWorld.barred = {f"s{i}": "outside" for i in barred if i < n}
    w = GeoSbaWorld(n, Params())
    for op, i in steps:
        name = f"s{i % n}"
        if op == "crash":
            w.crash(name)
        elif op == "boot" and w.nodes[name].decision is None:
            w.boot(name)
        elif op == "cut":
            w.nodes[name].group = 1
        elif op == "heal":
            w.nodes[name].group = 0
        w.settle()
        running = {s for g in (0, 1) for s in w.running_in(g)}
        assert not running & set(GeoSbaWorld.barred), running
        for group in (0, 1):
            up = [
                s
                for s in w.eligible_in(group)
                if s not in GeoSbaWorld.barred and w.nodes[s].decision is not None
            ]
            assert len(w.running_in(group)) == (1 if up else 0), (group, up)


def test_sba_a_barred_site_stops_whatever_else_holds_unless_its_copy_is_in_doubt() -> None:
    from dataclasses import fields

    from harmony.strategies.tables import SBA_GOALS, Goal, SbaFacts

    names = [f.name for f in fields(SbaFacts) if f.name != "barred"]
    for values in product((False, True), repeat=len(names)):
        facts = SbaFacts(**dict(zip(names, values, strict=True)), barred=True)
        goal, _ = first_match(SBA_GOALS, facts)
        assert goal is (Goal.FENCED if facts.unknown else Goal.STOPPED), facts
