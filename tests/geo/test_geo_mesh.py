"""geo on real processes: three sites labelled EU / US / EU, an absolute-consistency ledger
restricted to ``jurisdiction in ["EU"]``, the US site ranked before the second EU site.

Kill the EU holder: the other EU site takes over (not the US one, whatever its rank). Kill
both EU sites: nothing starts on the US site, from the copies' own records and the process
table (the ground-truth checker), and `harmony status` says why. Restart one EU site: it
runs there. An operator's move to the US site is refused, naming the constraint.
"""

from __future__ import annotations

import json
import signal
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import tomli_w
from support.commands import harmony as run_harmony
from support.meshes import Watcher
from support.waiting import wait_until
from support.workloads import workload

from harmony.actors.messages import CommandResult, MoveWorkload
from harmony.mesh import subjects
from harmony.mesh.remote import RemoteRef
from harmony.sim.launch import LocalMesh
from harmony.sim.scenario import SIM_TIMINGS
from harmony.strategies.timing import worst_case_takeover

pytestmark = pytest.mark.mesh

EU_ONLY = ['jurisdiction in ["EU"]']
LABELS = {"a": {"jurisdiction": "EU"}, "b": {"jurisdiction": "US"}, "c": {"jurisdiction": "EU"}}
BOUND = worst_case_takeover(SIM_TIMINGS.lease_ttl, election_time=9.0) + 10.0
PATH = "agent/workload/ledger"


def harmony(*args: str) -> subprocess.CompletedProcess[str]:
    return run_harmony(*args, timeout=90, env={"COLUMNS": "400", "PATH": "/usr/bin:/bin"})


@pytest.fixture
def watch(tmp_path: Path) -> Iterator[Watcher]:
    ledger = workload("ledger", "absolute-consistency", "a", ["b", "c"], tmp_path)
    topology = msgspec.structs.replace(ledger.topology, constraints=EU_ONLY)
    mesh = LocalMesh(
        tmp_path,
        mesh="geo",
        sites=("a", "b", "c"),
        witnesses=("w1", "w2"),
        timings=SIM_TIMINGS,
        site_labels=LABELS,
        workloads=[msgspec.structs.replace(ledger, topology=topology)],
    )
    try:
        # Five servers and five lease replicas: with both EU sites dead the lease store still
        # has a quorum, so the US site could take the lease; only the constraint stops it.
        for path in mesh.write_configs().values():
            data = tomllib.loads(path.read_text())
            data["nats"]["kv_replicas"] = 5
            path.write_text(tomli_w.dumps(data))
        mesh.start(timeout=90)
        w = Watcher(mesh)
        yield w
        w.close()
    finally:
        mesh.stop()


def detail(watch: Watcher, site: str, key: str) -> str:
    snap = watch.snaps().get(site)
    sup = next((a for a in snap.actors if a.path == PATH), None) if snap else None
    return sup.detail.get(key, "") if sup is not None else ""


def never_on_us(watch: Watcher) -> None:
    intervals = watch.assert_safe()
    assert {i.site for i in intervals} <= {"a", "c"}, intervals
    starts = [e for e in watch.history() if e.site == "b" and e.kind in ("start", "promote")]
    assert starts == [], starts


def test_the_ledger_never_leaves_the_eu(watch: Watcher) -> None:
    mesh = watch.mesh
    watch.wait_runs_on("ledger", {"a"}, 30)
    wait_until(lambda: detail(watch, "b", "geo") == "outside", 20, message=watch.tail)
    assert "jurisdiction='US'" in detail(watch, "b", "geo_reason")

    # An operator's move to the US site is refused, naming the constraint.
    ref = RemoteRef(watch.conn, "geo", "a", PATH, 5.0, sender=subjects.OPERATOR)
    answer = ref.ask(MoveWorkload(target="b", reason="test"))
    assert isinstance(answer, CommandResult) and not answer.ok, answer
    assert 'outside jurisdiction in ["EU"]' in answer.detail, answer.detail

    # The EU holder dies: the other EU site takes over, not the US one ranked before it.
    watch.record_fault("a", "site-killed", "SIGKILL agent and nats-server")
    mesh.kill("a", signal.SIGKILL)
    watch.wait_runs_on("ledger", {"c"}, BOUND)
    never_on_us(watch)

    # Both EU sites are gone: the ledger stays down; the US site says why.
    watch.record_fault("c", "site-killed", "SIGKILL agent and nats-server")
    mesh.kill("c", signal.SIGKILL)
    wait_until(lambda: detail(watch, "b", "geo") == "down", BOUND, message=watch.tail)
    # The lease is seen gone on b: were b allowed, it would take it now (rank 0 alive).
    wait_until(
        lambda: detail(watch, "b", "lease_seen").startswith("gone"), BOUND, message=watch.tail
    )
    assert watch.runners("ledger") == {}
    never_on_us(watch)
    config = str(mesh.procs["b"].config_path)
    # `status --workload` finds b by the sites bucket, whose stream may be electing a leader
    # after two of its servers died: ask again until b's answer is in.
    out = wait_until(
        lambda: (
            (o := harmony("status", "--config", config, "--workload", "ledger"))
            and "geo=down" in o.stdout
            and o
        ),
        60,
        message="harmony status --workload ledger never showed geo=down",
    )
    out = wait_until(
        lambda: (
            (o := harmony("status", "--config", config, "--workload", "ledger", "--json"))
            and '"site":"b"' in o.stdout
            and o
        ),
        60,
        message="harmony status --workload ledger --json never answered for b",
    )
    [snap] = [s for s in json.loads(out.stdout) if s["site"] == "b"]
    [sup] = [a for a in snap["actors"] if a["path"] == PATH]
    reason = sup["detail"]["geo_reason"]
    assert reason.startswith("no eligible site is alive: the workload stays down"), reason
    assert "site b has jurisdiction='US'" in reason, reason
    out = harmony("status", "--config", config, "--site", "b")
    assert "jurisdiction=US" in out.stdout.splitlines()[0], out

    # One EU site comes back: the ledger runs there.
    watch.record_fault("c", "site-restarted", "agent and nats-server")
    mesh.start(["c"], timeout=60, wait_formed=False)
    watch.wait_runs_on("ledger", {"c"}, BOUND)
    wait_until(lambda: detail(watch, "b", "geo") == "outside", 20, message=watch.tail)
    never_on_us(watch)
