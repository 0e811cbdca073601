"""A loopback mesh of real agents to attack over the wire, and what the attacker reads back.

Sites a and b; `ledger` (absolute-consistency, `sleep MARK`), `hooked` (absolute-consistency,
hooks that log every call and its token) and `sba` (split-brain-allowed, `sleep MARK+1`), each
with a as primary and b as standby. An R1 lease bucket, so a and b make a JetStream quorum.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import tomli_w

from harmony import procfs
from harmony.actors.messages import Snapshot, SnapshotRequest
from harmony.config import (
    FailoverTopologyConfig,
    HooksDriverConfig,
    ProcessDriverConfig,
    WorkloadConfig,
)
from harmony.mesh import subjects, wire
from harmony.mesh.connection import MeshConnection, NoResponders
from harmony.sim.launch import LocalMesh, alive, pids_mentioning
from support.meshes import FAST_HEARTBEATS
from support.waiting import wait_until

MESH = "wire"
MARK = random.randrange(100_000, 900_000)
"""`sleep MARK` is a ledger copy in the process table (unique per test run)."""

HOOKS = r"""#!/bin/sh
# Logs every call with its token; the workload is one detached `sleep`, pid in $D/pid.
D=$(dirname "$0")
[ "$1" = probe ] || echo "$1 token=$HARMONY_FENCING_TOKEN" >> "$D/calls"
alive() { p=$(cat "$D/pid" 2>/dev/null); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
case "$1" in
start) alive && exit 0
       setsid sh -c 'echo $$ > "$0"; exec sleep @MARK2@' "$D/pid" </dev/null >/dev/null 2>&1 &
       while [ ! -s "$D/pid" ]; do sleep 0.01; done ;;
stop|fence) p=$(cat "$D/pid" 2>/dev/null); [ -n "$p" ] && kill -9 "$p" 2>/dev/null
       while alive; do sleep 0.01; done ;;
probe) alive || exit 1 ;;
esac
"""


def workloads(hooks: Path) -> list[WorkloadConfig]:
    topology = FailoverTopologyConfig(primary="a", standbys=["b"])
    script = hooks / "ctl.sh"
    return [
        WorkloadConfig(
            name="ledger",
            driver=ProcessDriverConfig(command=["sleep", str(MARK)]),
            topology=topology,
        ),
        WorkloadConfig(
            name="hooked",
            driver=HooksDriverConfig(
                start=f"{script} start",
                stop=f"{script} stop",
                fence=f"{script} fence",
                probe=f"{script} probe",
                probe_interval=0.5,
            ),
            topology=topology,
        ),
        WorkloadConfig(
            name="sba",
            driver=ProcessDriverConfig(command=["sleep", str(MARK + 1)]),
            topology=topology,
            strategy="split-brain-allowed",
        ),
    ]


def write_hooks(workdir: Path, site: str) -> Path:
    """The hooks directory of `site` (`workdir/hooks/<site>`), its `ctl.sh` written."""
    hooks = workdir / "hooks" / site
    hooks.mkdir(parents=True)
    (hooks / "ctl.sh").write_text(HOOKS.replace("@MARK2@", str(MARK + 2)))
    (hooks / "ctl.sh").chmod(0o755)
    return hooks


def start_mesh(workdir: Path, sites: tuple[str, ...] = ("a", "b")) -> Iterator[LocalMesh]:
    """A fixture body: the mesh, stopped (and swept) whatever happens. Each site has its own
    hooks directory (`workdir/hooks/<site>`): its pid file and its log of calls."""
    per_site = {site: workloads(write_hooks(workdir, site)) for site in sites}
    # Plaintext: these attack the agent's own checks (the bridge, the peers), as behind a
    # server that lets everything through; a secure server refuses most of them first
    # (tests/security/test_attack_table.py replays the table against one).
    m = LocalMesh(
        workdir,
        mesh=MESH,
        sites=sites,
        timings=FAST_HEARTBEATS,
        site_workloads=per_site,
        secure=False,
    )
    try:
        for path in m.write_configs().values():
            data = tomllib.loads(path.read_text())
            data.setdefault("nats", {})["kv_replicas"] = 1
            path.write_text(tomli_w.dumps(data))
        m.start(timeout=90)
        yield m
    finally:
        m.stop()
        for mark in (MARK, MARK + 1, MARK + 2):  # nothing of ours outlives the test
            for pid in pids_mentioning(f"sleep {mark}"):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


MARKS = {"ledger": MARK, "sba": MARK + 1, "hooked": MARK + 2}


def copies(mark: int = MARK) -> list[int]:
    """The process table's word: live `sleep <mark>` processes (not their keepers)."""
    return [
        p
        for p in pids_mentioning(f"sleep {mark}")
        if procfs.cmdline(p).startswith(f"sleep {mark}") and alive(p)
    ]


def snapshot(conn: MeshConnection, site: str, timeout: float = 3.0, mesh: str = MESH) -> Snapshot:
    raw = conn.request(subjects.snapshot(mesh, site), wire.encode(SnapshotRequest()), timeout)
    snap = wire.decode(raw)
    assert isinstance(snap, Snapshot), snap
    return snap


def rejected(conn: MeshConnection, site: str, mesh: str = MESH) -> dict[str, int]:
    """What `site`'s bridge refused so far, by reason."""
    return dict(snapshot(conn, site, mesh=mesh).rejected)


def same_agents(
    conn: MeshConnection,
    settled: Mapping[str, int],
    incarnations: Mapping[str, str],
    marks: Mapping[str, int] = MARKS,
    mesh: str = MESH,
) -> bool:
    """An attack row's ground truth: the same agents (incarnations), no actor restarted, and
    each copy the same one process it was (`settled`: workload -> pid, from the process
    table, whose `sleep <mark>` processes are looked up again)."""
    for site, incarnation in incarnations.items():
        snap = snapshot(conn, site, mesh=mesh)
        if snap.incarnation != incarnation or any(i.restarts for i in snap.actors):
            return False
    return all(copies(mark) == [settled[w]] for w, mark in marks.items())


def violations(mesh: LocalMesh, subject: str) -> int:
    return sum(subject in line for line in mesh.permission_violations())


def server_refuses_publish(
    mesh: LocalMesh, conn: MeshConnection, subject: str, payload: bytes
) -> None:
    """The server drops it and logs a violation; nobody answers (a request times out)."""
    before = violations(mesh, subject)
    with pytest.raises((TimeoutError, NoResponders)):
        conn.request(subject, payload, 1.0)
    wait_until(lambda: violations(mesh, subject) > before, 10, message=f"no violation: {subject}")


def ask_raw(
    conn: MeshConnection, site: str, sender: str, path: str, payload: bytes, timeout: float = 5.0
) -> wire.Message:
    """Send bytes as an ask from `sender`; the decoded answer (raises TimeoutError if none)."""
    subject = subjects.actor(MESH, site, subjects.ASK, sender, path)
    return wire.decode(conn.request(subject, payload, timeout))


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """What was counted between two readings, by reason (reasons that did not move left out)."""
    moved = {k: after.get(k, 0) - before.get(k, 0) for k in {*after, *before}}
    return {k: v for k, v in sorted(moved.items()) if v}
