"""Real agents refuse what they must not act on: a site whose lease timings differ from the
running mesh's is refused at start (exit 2, nothing started), and a command with a control
character never reaches a workload's run actor."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from support.meshes import FAST_HEARTBEATS, actor, dump, snapshots
from support.processes import pid_alive
from support.waiting import wait_until

from harmony.actors.journal import read_journal
from harmony.actors.messages import StopWorkload
from harmony.config import FailoverTopologyConfig, ProcessDriverConfig, WorkloadConfig
from harmony.mesh import subjects, wire
from harmony.mesh.connection import MeshConnection
from harmony.mesh.remote import RemoteError, RemoteRef
from harmony.sim.launch import LaunchError, LocalMesh

pytestmark = pytest.mark.mesh

MESH = "refuse"
RUN = "agent/workload/ledger/run"


def edit(path: Path, change: dict[str, dict[str, Any]]) -> None:
    data = tomllib.loads(path.read_text())
    for table, values in change.items():
        data.setdefault(table, {}).update(values)
    path.write_text(tomli_w.dumps(data))


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    """a (primary of `ledger`, lease_ttl 8 s) and a witness run; b's file says lease_ttl 6 s.
    R1 bucket, so a and the witness make a JetStream quorum without b."""
    m = LocalMesh(
        Path(tmp_path_factory.mktemp("refuse")),
        mesh=MESH,
        sites=("a", "b"),
        witnesses=("w",),
        timings=FAST_HEARTBEATS,
        workloads=[
            WorkloadConfig(
                name="ledger",
                driver=ProcessDriverConfig(command=["sleep", "600"]),
                topology=FailoverTopologyConfig(primary="a", standbys=["b"]),
            )
        ],
    )
    try:
        paths = m.write_configs()
        for path in paths.values():
            edit(path, {"nats": {"kv_replicas": 1}})
        edit(paths["b"], {"timings": {"lease_ttl": 6.0}})
        m.start(["a", "w"], timeout=90)
        yield m
    finally:
        m.stop()


@pytest.fixture
def conn(mesh: LocalMesh) -> Iterator[MeshConnection]:
    c = mesh.connect("test-client", ["a", "w"])
    try:
        c.wait_connected(10)
        yield c
    finally:
        c.close()


def test_a_site_with_other_lease_timings_is_refused_and_starts_nothing(mesh: LocalMesh) -> None:
    with pytest.raises(LaunchError, match="agent b exited with 2"):
        mesh.start(["b"], timeout=90)
    b = mesh.procs["b"]
    expected = (
        f"refusing to start: lease bucket harmony-{MESH}-lease-ledger has max_age 8 s, this site's "
        f"lease_ttl is 6 s (timings.lease_ttl in {b.config_path}): every site of a mesh must "
        "use the same lease timings"
    )
    assert expected in b.log_path.read_text(), b.log_tail()
    kinds = [e.kind for e in read_journal(mesh.workdir / "b" / "journal.jsonl")]
    assert kinds == ["agent-start", "agent-refused", "agent-stop"]
    assert mesh.server_pids("b") == []  # its embedded server was stopped too
    assert mesh.procs["a"].running, dump(mesh)


def test_a_stop_with_a_nul_byte_never_reaches_the_run_actor(
    mesh: LocalMesh, conn: MeshConnection
) -> None:
    def running() -> Any:
        info = actor(snapshots(conn, mesh)["a"], RUN)
        return info if info is not None and info.state == "running" else None

    before = wait_until(running, 30, message=lambda: dump(mesh))
    pid = int(before.detail["pid"])
    malformed = snapshots(conn, mesh)["a"].malformed
    ref = RemoteRef(conn, MESH, "a", RUN, 5.0, sender=subjects.OPERATOR)
    for reason in ("x\0y", "line\nbreak", "\x1b[2J"):
        with pytest.raises(RemoteError) as caught:
            ref.ask(StopWorkload(reason=reason))
        assert caught.value.code == wire.ERR_MALFORMED
        assert "control character" in caught.value.reason
    wait_until(lambda: snapshots(conn, mesh)["a"].malformed >= malformed + 3, 10)
    after = actor(snapshots(conn, mesh)["a"], RUN)
    assert after is not None and after.state == "running" and after.restarts == 0
    assert int(after.detail["pid"]) == pid and pid_alive(pid)
