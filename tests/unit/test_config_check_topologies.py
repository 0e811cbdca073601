"""`harmony config check` and issue 12's topologies: what the given site files prove about
placing each workload (eligible sites, labels the constraints name, price hooks, prices),
and what the sites of a workload must agree on (its topology and constraints, by meaning).
Where a site's file is not given, a note says what could not be checked, not a guess."""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from support.commands import harmony

from harmony.config import FailoverTopologyConfig
from harmony.config.placement import meaning
from harmony.config_check import Problem, check

EU, US = 'jurisdiction = "EU"', 'jurisdiction = "US"'

WEB = """
[[workloads]]
name = "web"
strategy = "split-brain-allowed"
driver = {{ kind = "process", command = ["sleep", "600"] }}
[workloads.topology]
kind = "horizontal"
sites = ["a", "b", "c"]
replicas = {replicas}
constraints = [{constraints}]
"""

EU_ONLY = "'jurisdiction in [\"EU\"]'"


def web(replicas: int = 2, constraints: str = EU_ONLY) -> str:
    return WEB.format(replicas=replicas, constraints=constraints)


def site(tmp: Path, name: str, labels: str, body: str, top: str = "") -> str:
    """A site file: its labels (and `top`, more top-level keys and tables), then `body`."""
    path = tmp / f"{name}.toml"
    path.write_text(f'mesh = "prod"\nsite = "{name}"\nlabels = {{ {labels} }}\n{top}\n{body}')
    return str(path)


def mesh(tmp: Path, body: str, c_labels: str = US, top: dict[str, str] | None = None) -> list[str]:
    """a and b in the EU, c in the US, all configuring `body`."""
    top = top or {}
    return [
        site(tmp, n, labels, body, top.get(n, ""))
        for n, labels in (("a", EU), ("b", EU), ("c", c_labels))
    ]


def test_replicas_within_the_eligible_sites_pass(tmp_path: Path) -> None:
    report = check(mesh(tmp_path, web(replicas=2)))
    assert report.problems == []


def test_more_replicas_than_eligible_sites_is_reported_once_with_the_excluded_site(
    tmp_path: Path,
) -> None:
    files = mesh(tmp_path, web(replicas=3))
    report = check(files)
    assert report.problems == [
        Problem(
            files[0],
            "workloads[0].topology.replicas",
            "3 replicas, but the eligible sites have room for 2 "
            "(site c has jurisdiction='US', outside jurisdiction in [\"EU\"])",
        )
    ]
    roomy = mesh(tmp_path, web(replicas=3), top={"b": "capacity = 2"})  # b takes two copies
    assert check(roomy).problems == []


def test_a_site_whose_file_is_not_given_is_a_note_not_a_guess(tmp_path: Path) -> None:
    files = mesh(tmp_path, web(replicas=3))
    report = check(files[:2])  # c's labels are unknown
    assert report.problems == []
    assert report.notes == [
        "workload 'web': 3 replicas, but the eligible sites have room for 2; "
        "no file given for c: their labels are unknown"
    ]


def test_a_constraint_naming_a_label_no_site_has(tmp_path: Path) -> None:
    files = mesh(tmp_path, web(constraints="'tier == \"gold\"'"))
    report = check(files)
    assert report.problems == [
        Problem(
            files[0],
            "workloads[0].topology.constraints[0]",
            "'tier == \"gold\"': no given site has a label 'tier' (labels: jurisdiction)",
        )
    ]
    assert check(files[:1]).problems == []  # b and c not given: they may have it
    assert "no given site has a label 'tier'" in check(files[:1]).notes[0]


def test_a_spread_label_no_site_has(tmp_path: Path) -> None:
    files = mesh(tmp_path, web() + 'spread_label = "zone"\n')
    assert [(p.field, p.reason) for p in check(files).problems] == [
        (
            "workloads[0].topology.spread_label",
            "'zone': no given site has a label 'zone' (labels: jurisdiction)",
        ),
    ]


FAILOVER = """
[[workloads]]
name = "ledger"
driver = {{ kind = "process", command = ["sleep", "600"] }}
topology = {{ kind = "failover", primary = "a", standbys = ["c"], constraints = [{c}] }}
"""


def test_a_failover_whose_constraints_leave_no_site(tmp_path: Path) -> None:
    a = site(tmp_path, "a", EU, FAILOVER.format(c="'jurisdiction in [\"CH\"]'"))
    c = site(tmp_path, "c", US, FAILOVER.format(c="'jurisdiction in [\"CH\"]'"))
    assert check([a, c]).problems == [
        Problem(
            a,
            "workloads[0].topology.constraints",
            "no site of the topology meets the constraints (site a has jurisdiction='EU', "
            "outside jurisdiction in [\"CH\"]; site c has jurisdiction='US', outside "
            'jurisdiction in ["CH"])',
        )
    ]
    ok = FAILOVER.format(c="'jurisdiction in [\"EU\"]'")
    assert check([site(tmp_path, "a", EU, ok), site(tmp_path, "c", US, ok)]).problems == []


COST = """
[[workloads]]
name = "batch"
driver = { kind = "process", command = ["sleep", "600"] }
topology = { kind = "cost", sites = ["a", "b"], min_saving = 0.05 }
"""


def test_a_cost_workload_needs_a_priced_eligible_site(tmp_path: Path) -> None:
    a, b = site(tmp_path, "a", EU, COST), site(tmp_path, "b", EU, COST)
    assert [(p.file, p.field) for p in check([a, b]).problems] == [(a, "workloads[0].topology")]
    assert "has a [price]: it never runs" in check([a, b]).problems[0].reason
    priced = site(tmp_path, "b", EU, COST, top="[price]\nvalue = 0.3\n")
    assert check([a, priced]).problems == []


def test_a_price_hook_must_be_an_executable_file(tmp_path: Path) -> None:
    hook = tmp_path / "price.sh"
    cases = {
        "missing": "no such file",
        "not-executable": "not executable (chmod +x)",
        "directory": "not a regular file",
    }
    for case, reason in cases.items():
        if case == "not-executable":
            hook.write_text("#!/bin/sh\necho 0.1\n")
        elif case == "directory":
            hook.unlink()
            hook.mkdir()
        path = site(tmp_path, "a", EU, "", top='[price]\nhook = "price.sh"\n')
        assert check([path]).problems == [Problem(path, "price.hook", f"{hook}: {reason}")], case
    hook.rmdir()
    hook.write_text("#!/bin/sh\necho 0.1\n")
    hook.chmod(0o755)
    assert check([path]).problems == []


def test_sites_must_agree_on_a_workloads_constraints_by_meaning(tmp_path: Path) -> None:
    two = '\'jurisdiction in ["EU", "CH"]\', \'provider != "x"\''
    reordered = '\'provider!="x"\', \'jurisdiction in ["CH","EU"]\''
    a = site(tmp_path, "a", EU, web(constraints=two))
    b = site(tmp_path, "b", EU, web(constraints=reordered))
    c = site(tmp_path, "c", US, web(constraints=EU_ONLY))
    report = check([a, b, c])
    assert [p for p in report.problems if "differs" in p.reason] == [
        Problem(
            "",
            "workload 'web' topology.constraints",
            'differs: [\'jurisdiction in ["EU", "CH"]\', \'provider != "x"\'] in '
            f"{a}, {b}; ['jurisdiction in [\"EU\"]'] in {c}",
        )
    ]


def test_sites_disagreeing_on_the_kind_are_told_only_that(tmp_path: Path) -> None:
    a = site(tmp_path, "a", EU, web())
    b = site(tmp_path, "b", EU, COST.replace('"batch"', '"web"'))
    differs = [p for p in check([a, b]).problems if "topology." in p.field]
    assert [p.field for p in differs] == ["workload 'web' topology.kind"]
    assert differs[0].reason == f"differs: 'horizontal' in {a}; 'cost' in {b}"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(['a in ["x", "y"]', 'b != "z"', 'c not in ["q"]', 'd == "w"']),
        min_size=1,
        max_size=4,
        unique=True,
    ),
    st.randoms(use_true_random=False),
)
def test_constraints_mean_the_same_in_any_order_spacing_or_list_order(
    texts: list[str], rnd: random.Random
) -> None:
    shuffled = [t.replace('"x", "y"', '"y","x"').replace(" ", "  ") for t in texts]
    rnd.shuffle(shuffled)
    one = FailoverTopologyConfig(primary="a", constraints=texts)
    other = FailoverTopologyConfig(primary="a", constraints=shuffled)
    assert meaning(one) == meaning(other)
    narrower = FailoverTopologyConfig(primary="a", constraints=[*texts, 'e == "new"'])
    assert meaning(narrower) != meaning(one)


# -- the command, as an operator runs it ---------------------------------------------------


def test_cli_reports_replicas_beyond_the_eligible_sites_with_exit_2(tmp_path: Path) -> None:
    files = mesh(tmp_path, web(replicas=3))
    out = harmony("config", "check", *files)
    assert out.returncode == 2, out.stdout
    assert (
        f"config check: {files[0]}: workloads[0].topology.replicas: 3 replicas, but the "
        "eligible sites have room for 2" in out.stderr
    )


def test_cli_reports_a_price_hook_that_is_not_executable(tmp_path: Path) -> None:
    (tmp_path / "price.sh").write_text("#!/bin/sh\necho 0.1\n")
    path = site(tmp_path, "a", EU, "", top='[price]\nhook = "price.sh"\n')
    out = harmony("config", "check", path)
    assert out.returncode == 2
    assert f"{path}: price.hook: {tmp_path / 'price.sh'}: not executable" in out.stderr


def test_cli_accepts_a_mesh_of_every_topology_and_summarises_it(tmp_path: Path) -> None:
    files = mesh(tmp_path, web(replicas=2), top={"a": "capacity = 2\n[price]\nvalue = 0.1\n"})
    out = harmony("config", "check", *files)
    assert out.returncode == 0, out.stderr
    assert "  labels jurisdiction=EU; capacity 2; price 0.1" in out.stdout
    assert (
        "workload web: split-brain-allowed, process driver, horizontal, 2 replicas over "
        "a, b, c (one domain per site, max_skew 1, max_unavailable 1)" in out.stdout
    )
    assert '    constraints: jurisdiction in ["EU"]' in out.stdout
