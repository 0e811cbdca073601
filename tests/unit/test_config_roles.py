"""Site roles in ``[nats]``: every role mistake is refused naming file, field and reason;
a file without roles is an all-core site, as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from harmony.config import ConfigError, kv_replicas, load_config
from harmony.mesh.conf_text import render_conf
from harmony.mesh.server_conf import ServerSpec

CORE = """
mesh = "prod"
site = "a"
witness = {witness}

[nats]
role = "core"
cores = {cores}
routes = ["nats-route://10.0.0.2:6222", "nats-route://10.0.0.3:6222"]
leafnode_port = 7422
"""

EDGE = """
mesh = "prod"
site = "{site}"
witness = {witness}

[nats]
role = "edge"
cores = {cores}
leaf_remotes = {remotes}
routes = {routes}
"""

REMOTES = '["nats-leaf://10.0.0.1:7422", "nats-leaf://10.0.0.2:7422"]'


def load(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def edge(**kw: str) -> str:
    fields = {"site": "e1", "witness": "false", "cores": '["a", "b", "c"]'}
    fields |= {"remotes": REMOTES, "routes": "[]", **kw}
    return EDGE.format(**fields)


def refused(tmp_path: Path, text: str) -> ConfigError:
    path = load(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.file == str(path)
    return e.value


def test_a_core_and_an_edge_load(tmp_path: Path) -> None:
    core = load_config(load(tmp_path, CORE.format(witness="true", cores='["a", "b", "c"]')))
    assert (core.nats.role, core.nats.cores, kv_replicas(core)) == ("core", ["a", "b", "c"], 3)
    assert ServerSpec.from_config(core).leaf_port == 7422
    e = load_config(load(tmp_path, edge()))
    assert (e.nats.role, kv_replicas(e)) == ("edge", 3)
    spec = ServerSpec.from_config(e)
    assert spec.leaf_node and not spec.clustered
    conf = render_conf(spec)
    assert "jetstream {" not in conf and "remotes" in conf


def test_no_roles_is_all_core_as_before(tmp_path: Path) -> None:
    text = 'mesh = "prod"\nsite = "a"\n[nats]\nroutes = ["nats-route://10.0.0.2:6222"]\n'
    cfg = load_config(load(tmp_path, text))
    assert (cfg.nats.role, cfg.nats.cores, kv_replicas(cfg)) == ("core", [], 2)
    spec = ServerSpec.from_config(cfg)
    assert spec.leaf_port == 0 and not spec.leaf_node
    conf = render_conf(spec)
    assert "leafnodes" not in conf and "default_js_domain" not in conf


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        (CORE.format(witness="false", cores='["a", "b"]'), "nats.cores", "an even number"),
        (CORE.format(witness="false", cores='["a", "b", "c", "d"]'), "nats.cores", "3, 5 or 7"),
        (CORE.format(witness="false", cores='["x", "b", "c"]'), "nats.cores", "not in nats.cores"),
        (CORE.format(witness="false", cores='["a", "a", "c"]'), "nats.cores", "listed twice"),
        (CORE.format(witness="false", cores='["a", "b c", "d"]'), "nats.cores[1]", "valid"),
        (edge(cores="[]"), "nats.cores", "an edge needs the mesh's core sites"),
        (edge(cores='["a"]'), "nats.cores", "1 core (a) for a mesh with edges"),
        (edge(cores='["a", "e1", "c"]'), "nats.role", "an edge but nats.cores lists it"),
        (edge(remotes="[]"), "nats.leaf_remotes", "an edge needs the leafnode URLs"),
        (edge(remotes='["http://x:1"]'), "nats.leaf_remotes[0]", "not a nats-leaf://"),
        (edge(routes='["nats-route://10.0.0.2:6222"]'), "nats.routes", "an edge has no routes"),
        (edge(witness="true"), "witness", "a witness is a core site"),
    ],
)
def test_role_mistakes_are_named(tmp_path: Path, text: str, field: str, reason: str) -> None:
    e = refused(tmp_path, text)
    assert e.field == field
    assert reason in e.reason


def test_a_core_with_leaf_remotes_is_refused(tmp_path: Path) -> None:
    text = CORE.format(witness="false", cores='["a", "b", "c"]') + f"leaf_remotes = {REMOTES}\n"
    e = refused(tmp_path, text)
    assert (e.field, e.reason) == (
        "nats.leaf_remotes",
        "only an edge connects to the core as a leaf node",
    )


def test_config_check_names_files_whose_core_lists_differ(tmp_path: Path) -> None:
    from harmony.config_check import check

    core = tmp_path / "a.toml"
    core.write_text(CORE.format(witness="false", cores='["a", "b", "c"]'))
    other = tmp_path / "e1.toml"
    other.write_text(edge(cores='["a", "b", "x"]'))
    report = check([str(core), str(other)])
    [problem] = [p for p in report.problems if p.field == "nats.cores"]
    assert f"a, b, c in {core}" in problem.reason and f"a, b, x in {other}" in problem.reason
    same = tmp_path / "e2.toml"
    same.write_text(edge(site="e2"))
    assert not [p for p in check([str(core), str(same)]).problems if p.field == "nats.cores"]


LEDGER = """
[[workloads]]
name = "ledger"
driver = { kind = "process", command = ["sleep", "60"] }
topology = { kind = "failover", primary = "e1", standbys = ["a"] }
"""


def test_config_check_wants_every_core_to_list_the_edges_leases(tmp_path: Path) -> None:
    """A core's server allows an edge's leaf link only the lease writes of workloads in the
    core's own file: a core that lacks an edge's exclusive workload is named."""
    from harmony.config_check import check

    files = {}
    for site in ("a", "b", "c"):
        text = CORE.format(witness="false", cores='["a", "b", "c"]').replace('"a"\n', f'"{site}"\n')
        files[site] = tmp_path / f"{site}.toml"
        files[site].write_text(
            text.replace('site = "a"', f'site = "{site}"') + LEDGER * (site == "a")
        )
    files["e1"] = tmp_path / "e1.toml"
    files["e1"].write_text(edge() + LEDGER)
    report = check([str(p) for p in files.values()])
    named = sorted(p.file for p in report.problems if "edge 'e1'" in p.reason)
    assert named == [str(files["b"]), str(files["c"])], report.problems
    # Listed on every core (b and c do not run it: role "none"), nothing to say.
    for site in ("b", "c"):
        files[site].write_text(files[site].read_text() + LEDGER)
    report = check([str(p) for p in files.values()])
    assert not [p for p in report.problems if "edge" in p.reason], report.problems
