"""nats-server in a Docker container (testcontainers): a JetStream KV round trip with CAS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import nats
import pytest
from nats.js.errors import KeyWrongLastSequenceError
from support.waiting import run_async, wait_until

from harmony.actors.messages import Ping, Pong
from harmony.actors.site import SITE_PATH
from harmony.client import collect_snapshots
from harmony.mesh import subjects
from harmony.mesh.connection import MeshConnection
from harmony.mesh.remote import RemoteRef

pytestmark = pytest.mark.docker


def test_kv_cas_roundtrip_in_container(nats_container: str) -> None:
    assert nats_container.startswith("nats://")

    async def roundtrip() -> None:
        nc = await nats.connect(servers=[nats_container], connect_timeout=5)
        try:
            js = nc.jetstream(timeout=5)
            kv = await js.create_key_value(bucket="containerized", history=5)
            rev1 = await kv.create("lease", b"site-a")
            with pytest.raises(KeyWrongLastSequenceError):
                await kv.create("lease", b"site-b")
            rev2 = await kv.update("lease", b"site-a-renewed", last=rev1)
            assert rev2 > rev1
            with pytest.raises(KeyWrongLastSequenceError):
                await kv.update("lease", b"stale-writer", last=rev1)
            entry = await kv.get("lease")
            assert (entry.value, entry.revision) == (b"site-a-renewed", rev2)
            info = await js.account_info()
            assert info.streams >= 1  # JetStream is really on in the container
        finally:
            await nc.close()

    run_async(roundtrip(), timeout=30)


def test_agent_runs_against_nats_in_a_container(nats_container: str, tmp_path: Path) -> None:
    """A real agent process in external mode, on the containerised server: it comes up,
    answers snapshots and remote asks over the mesh, and stops cleanly on SIGTERM."""
    config = tmp_path / "site.toml"
    config.write_text(
        'mesh = "boxed"\nsite = "dock"\n'
        f'[nats]\nmode = "external"\nservers = ["{nats_container}"]\n'
        "[timings]\nheartbeat_interval = 0.2\n"
    )
    ready = tmp_path / "ready"
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harmony",
            "agent",
            "--config",
            str(config),
            "--ready-file",
            str(ready),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    conn = MeshConnection([nats_container], "container-test").start()
    try:
        wait_until(lambda: ready.exists() or agent.poll() is not None, 30)
        assert agent.poll() is None, agent.stdout.read() if agent.stdout else ""
        conn.wait_connected(10)
        snaps = wait_until(lambda: collect_snapshots(conn, "boxed", 1.0), 10)
        assert list(snaps) == ["dock"]
        assert any(a.path == "agent/site" and a.state == "running" for a in snaps["dock"].actors)
        pong = RemoteRef(conn, "boxed", "dock", SITE_PATH, 5, sender=subjects.OPERATOR).ask(
            Ping(text="in a box")
        )
        assert pong == Pong(text="in a box", site="dock")
        os.killpg(agent.pid, signal.SIGTERM)
        assert agent.wait(30) == 0
    finally:
        conn.close()
        if agent.poll() is None:
            os.killpg(agent.pid, signal.SIGKILL)
            agent.wait(10)
