"""Prometheus metrics of real agents, scraped over HTTP during a real failover: the gauges say
who holds the lease and runs the copy, and the counters move when the standby takes over."""

from __future__ import annotations

import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.waiting import wait_until
from support.workloads import workload

from harmony.actors.messages import Ping, Pong
from harmony.actors.site import SITE_PATH
from harmony.mesh import subjects
from harmony.mesh.remote import RemoteRef
from harmony.sim.launch import LocalMesh
from harmony.sim.scenario import SIM_TIMINGS

pytestmark = pytest.mark.mesh
ROOT = Path(__file__).resolve().parents[2]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(mesh: LocalMesh, site: str) -> Samples:
    port = mesh.configs[site].metrics.port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def families(mesh: LocalMesh, site: str) -> set[str]:
    """Every sample name the site's families can have (a counter with no series yet too)."""
    port = mesh.configs[site].metrics.port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {
        f.name + suffix
        for f in text_string_to_metric_families(text)
        for suffix in SUFFIXES.get(f.type, ("",))
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum over every series of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[LocalMesh]:
    m = LocalMesh(
        tmp_path,
        mesh="metrics",
        sites=("a", "b", "c"),
        timings=SIM_TIMINGS,
        workloads=[workload("ledger", "absolute-consistency", "a", ["b", "c"], tmp_path)],
    )
    try:
        m.start(timeout=90)
        yield m
    finally:
        m.stop()


def test_metrics_follow_a_failover(mesh: LocalMesh) -> None:
    def a_runs() -> Samples | None:
        s = scrape(mesh, "a")
        ok = value(s, "harmony_workload_copies_running", site="a", workload="ledger") == 1
        return s if ok else None

    a = wait_until(a_runs, 60, message="a runs the ledger, says its metrics")
    assert value(a, "harmony_workload_lease_held", site="a", workload="ledger") == 1
    assert value(a, "harmony_workload_fencing_token", site="a", workload="ledger")
    left = value(a, "harmony_workload_fence_deadline_seconds", site="a", workload="ledger")
    assert left is not None and 0 < left <= SIM_TIMINGS.lease_ttl
    assert value(a, "harmony_peer_state", site="a", peer="b", state="alive") == 1
    assert value(a, "harmony_nats_server_up", site="a") == 1
    assert value(a, "harmony_jetstream_reachable", site="a") == 1
    assert total(a, "harmony_workload_lease_acquisitions_total", workload="ledger") >= 1
    assert total(a, "harmony_journal_events_total", kind="agent-start") == 1
    assert value(a, "harmony_bridge_ask_duration_seconds_count", site="a") is not None

    # An operator's ask crosses a's bridge: counted as received.
    conn = mesh.connect("operator")
    try:
        conn.wait_connected(10)
        ref = RemoteRef(conn, "metrics", "a", SITE_PATH, 5.0, sender=subjects.OPERATOR)
        assert isinstance(ref.ask(Ping()), Pong)
    finally:
        conn.close()
    a = scrape(mesh, "a")
    assert value(a, "harmony_bridge_frames_total", site="a", direction="received", kind="ask")

    def b_sees_a() -> Samples | None:  # b learns the holder from its lease watch or poll
        s = scrape(mesh, "b")
        seen = value(s, "harmony_workload_lease_holder", site="b", workload="ledger", holder="a")
        return s if seen else None

    b = wait_until(b_sees_a, 15, message="b never saw a hold the lease, per its metrics")
    assert value(b, "harmony_workload_lease_held", site="b", workload="ledger") == 0
    starts_before = total(b, "harmony_workload_copy_starts_total", workload="ledger")

    mesh.kill("a", signal.SIGKILL)

    def b_took_over() -> Samples | None:
        s = scrape(mesh, "b")
        ok = value(s, "harmony_workload_lease_held", site="b", workload="ledger") == 1
        ok = ok and value(s, "harmony_workload_copies_running", site="b", workload="ledger") == 1
        return s if ok else None

    b = wait_until(b_took_over, 60, message="b holds the lease and runs the copy, per metrics")
    assert value(b, "harmony_peer_state", site="b", peer="a", state="silent") == 1
    assert value(b, "harmony_peer_state", site="b", peer="a", state="alive") == 0
    assert total(b, "harmony_workload_lease_acquisitions_total", workload="ledger") >= 1
    assert total(b, "harmony_workload_copy_starts_total", workload="ledger") > starts_before
    assert total(b, "harmony_journal_events_total", kind="peer-silent") >= 1
    # The reason label is the strategy's table row, not free text with tokens in it.
    reasons = {dict(ls).get("reason") for (n, ls) in b if n.startswith("harmony_workload_copy")}
    assert reasons and all(r and not any(ch.isdigit() for ch in r) for r in reasons), reasons


def test_metrics_listen_on_loopback_only_by_default(mesh: LocalMesh) -> None:
    assert all(cfg.metrics.host == "127.0.0.1" for cfg in mesh.configs.values())
    lines = (mesh.workdir / "a.log").read_text()
    assert f"metrics on http://127.0.0.1:{mesh.configs['a'].metrics.port}/metrics" in lines


def test_the_grafana_dashboard_uses_only_exported_names(mesh: LocalMesh) -> None:
    import json
    import re

    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {n for e in exprs for n in re.findall(r"\bharmony_[a-z_]+", e)}
    assert used, "the dashboard queries nothing"
    exported = families(mesh, "a")
    missing = used - exported
    assert not missing, f"the dashboard asks for names no agent exports: {sorted(missing)}"
