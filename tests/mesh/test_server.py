"""The embedded nats-server: config rendering, real processes, supervision, a real cluster."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import KeyWrongLastSequenceError, NoStreamResponseError
from support.nats_servers import Node
from support.processes import pid_alive, tcp_port_open
from support.waiting import run_async, wait_until

from harmony.config import parse_config
from harmony.mesh.monitor import http_json
from harmony.mesh.ports import free_ports
from harmony.mesh.server import (
    EmbeddedServer,
    ServerSpec,
    ServerStartError,
    nats_server_binary,
    render_conf,
    wait_jetstream_ready,
)

REPO = Path(__file__).resolve().parents[2]


async def _connect(*urls: str) -> NATS:
    return await nats.connect(
        servers=list(urls),
        connect_timeout=2,
        reconnect_time_wait=0.1,
        max_reconnect_attempts=-1,
    )


async def _kv_cas_roundtrip(url: str, bucket: str, replicas: int = 1) -> None:
    """create, create again (refused), update with the right and a wrong revision."""
    nc = await _connect(url)
    try:
        js = nc.jetstream(timeout=5)
        kv = await js.create_key_value(bucket=bucket, replicas=replicas, history=5)
        rev1 = await kv.create("lease", b"a")
        with pytest.raises(KeyWrongLastSequenceError):
            await kv.create("lease", b"b")
        rev2 = await kv.update("lease", b"c", last=rev1)
        assert rev2 > rev1
        with pytest.raises(KeyWrongLastSequenceError):
            await kv.update("lease", b"d", last=rev1)
        entry = await kv.get("lease")
        assert (entry.value, entry.revision) == (b"c", rev2)
    finally:
        await nc.close()


# --- pure: specs and config text ------------------------------------------------------------


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(8)
    assert len(set(ports)) == 8
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_binary_is_the_venv_nats_server() -> None:
    binary = nats_server_binary()
    assert binary.name == "nats-server" and os.access(binary, os.X_OK)
    assert binary.parent == Path(sys.executable).parent


def test_standalone_conf_has_jetstream_fsync_and_no_cluster(tmp_path: Path) -> None:
    text = render_conf(ServerSpec(name="solo", store_dir=tmp_path / "js"))
    assert "sync_interval: always" in text
    assert f'store_dir: "{tmp_path / "js"}"' in text
    assert 'max_file_store: "1G"' in text
    assert 'server_name: "solo"' in text
    assert 'http: "127.0.0.1:8222"' in text
    assert "cluster {" not in text  # JetStream refuses a cluster block without routes


def test_cluster_conf_on_loopback(tmp_path: Path) -> None:
    spec = ServerSpec(
        name="a",
        cluster_name="prod",
        cluster_port=6222,
        routes=[
            "nats-route://127.0.0.1:6222",  # itself: dropped
            "nats-route://127.0.0.1:6223",
            "nats-route://127.0.0.1:6224",
        ],
        store_dir=tmp_path,
    )
    text = render_conf(spec)
    cluster = text[text.index("cluster {") :]
    assert 'name: "prod"' in cluster
    assert 'listen: "127.0.0.1:6222"' in cluster
    assert "no_advertise: true" in cluster
    assert "advertise:" not in cluster.replace("no_advertise:", "")
    assert '"nats-route://127.0.0.1:6223"' in cluster
    assert '"nats-route://127.0.0.1:6224"' in cluster
    assert '127.0.0.1:6222"\n  ]' not in cluster and cluster.count("nats-route://") == 2
    assert "sync_interval: always" in text
    assert spec.routes == tuple(spec.routes) and len(spec.routes) == 3


def test_cluster_conf_off_loopback_with_advertise(tmp_path: Path) -> None:
    spec = ServerSpec(
        name="b",
        host="10.1.2.3",
        routes=["nats-route://10.1.2.4:6222"],
        cluster_advertise="192.0.2.1:1",
        store_dir=tmp_path,
    )
    text = render_conf(spec)
    assert "no_advertise" not in text
    assert 'advertise: "192.0.2.1:1"' in text
    assert 'listen: "10.1.2.3:4222"' in text


def test_spec_only_self_route_means_standalone(tmp_path: Path) -> None:
    spec = ServerSpec(name="c", routes=["nats-route://localhost:6222"], store_dir=tmp_path)
    assert not spec.clustered
    assert "cluster {" not in render_conf(spec)


def test_spec_from_site_config(tmp_path: Path) -> None:
    toml = textwrap.dedent(
        f"""
        mesh = "blue"
        site = "paris"
        data_dir = "{tmp_path}"
        [nats]
        client_port = 4300
        cluster_port = 6300
        http_port = 8300
        routes = ["nats-route://127.0.0.1:6301"]
        cluster_advertise = "127.0.0.1:9"
        jetstream_max_store = "256M"
        """
    )
    spec = ServerSpec.from_config(parse_config(toml))
    assert spec.name == "paris" and spec.cluster_name == "blue"
    assert (spec.client_port, spec.cluster_port, spec.http_port) == (4300, 6300, 8300)
    assert spec.routes == ("nats-route://127.0.0.1:6301",)
    assert spec.store_dir == tmp_path / "nats"
    assert spec.cluster_advertise == "127.0.0.1:9" and spec.max_store == "256M"
    assert spec.client_url == "nats://127.0.0.1:4300"


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "bad name"},
        {"client_port": 70000},
        {"client_port": 4222, "http_port": 4222},
        {"routes": ["http://127.0.0.1:6222"]},
        {"max_store": "1G; evil: true"},
    ],
)
def test_spec_rejects_bad_values(fields: dict[str, object], tmp_path: Path) -> None:
    base: dict[str, object] = {"name": "ok", "store_dir": tmp_path}
    with pytest.raises(ValueError):
        ServerSpec(**(base | fields))  # type: ignore[arg-type]


def test_wait_jetstream_ready_times_out_with_reason() -> None:
    (port,) = free_ports(1)
    with pytest.raises(TimeoutError, match=r"/healthz: no answer"):
        wait_jetstream_ready([port], timeout=0.3)


# --- real processes -------------------------------------------------------------------------


@pytest.mark.mesh
def test_single_server_kv_cas(make_nats_server: Callable[..., Node]) -> None:
    node = make_nats_server("solo")
    assert node.server.running and node.server.pid is not None
    assert node.client_url == f"nats://127.0.0.1:{node.spec.client_port}"
    jsz = http_json(f"{node.http_url}/jsz")
    assert jsz is not None and jsz["config"]["sync_always"] is True  # the server honours it
    assert node.event_kinds() == ["started"]
    run_async(_kv_cas_roundtrip(node.client_url, "solo_kv"))


@pytest.mark.mesh
def test_one_node_cluster_with_self_route_serves_jetstream(
    make_nats_cluster: Callable[..., list[Node]],
) -> None:
    (node,) = make_nats_cluster(1)
    assert node.spec.routes == (node.spec.route_url,) and not node.spec.clustered
    run_async(_kv_cas_roundtrip(node.client_url, "one_kv"))


@pytest.mark.mesh
def test_killed_server_is_restarted_and_keeps_data(make_nats_server: Callable[..., Node]) -> None:
    node = make_nats_server("phoenix")

    async def write() -> int:
        nc = await _connect(node.client_url)
        try:
            kv = await nc.jetstream(timeout=5).create_key_value(bucket="durable")
            return int(await kv.create("k", b"before-crash"))
        finally:
            await nc.close()

    rev = run_async(write())
    old_pid = node.server.pid
    assert old_pid is not None
    node.server.kill()
    assert not pid_alive(old_pid)
    wait_until(
        lambda: node.server.running and node.server.pid != old_pid and node.server.restarts == 1,
        timeout=15,
        message=lambda: f"not restarted; events={node.events}\n{node.server.log_tail()}",
    )
    assert node.event_kinds() == ["started", "exited", "restarting", "started"]

    async def read_and_cas() -> None:
        nc = await _connect(node.client_url)
        try:
            kv = await nc.jetstream(timeout=5).key_value("durable")
            entry = await kv.get("k")
            assert (entry.value, entry.revision) == (b"before-crash", rev)
            assert await kv.update("k", b"after", last=rev) > rev
        finally:
            await nc.close()

    run_async(read_and_cas())


@pytest.mark.mesh
def test_start_during_a_restart_waits_for_the_supervisor(
    make_nats_server: Callable[..., Node],
) -> None:
    node = make_nats_server("racer")
    old_pid = node.server.pid
    node.server.kill()
    node.server.start(timeout=15)  # must not launch a second server next to the supervisor's
    assert node.server.running and node.server.pid != old_pid
    assert node.server.restarts == 1
    assert node.event_kinds() == ["started", "exited", "restarting", "started"]


@pytest.mark.mesh
def test_stop_leaves_no_process_and_is_idempotent(make_nats_server: Callable[..., Node]) -> None:
    node = make_nats_server("stopper")
    pid = node.server.pid
    assert pid is not None and pid_alive(pid)
    node.server.stop()
    assert not pid_alive(pid)
    assert not node.server.running and node.server.pid is None
    assert not tcp_port_open("127.0.0.1", node.spec.client_port)
    node.server.stop()  # again: no error
    assert node.event_kinds() == ["started"]  # a stop is not a crash: no restart


@pytest.mark.mesh
def test_kill_without_supervision_stays_dead(make_nats_server: Callable[..., Node]) -> None:
    node = make_nats_server("mortal", supervise=False)
    pid = node.server.pid
    assert pid is not None
    node.server.kill()
    assert not pid_alive(pid) and not node.server.running
    node.server.start()  # a manual start still works
    assert node.server.running and node.server.pid != pid


@pytest.mark.mesh
def test_start_on_taken_port_fails_with_log_tail(tmp_path: Path) -> None:
    client, cluster, http = free_ports(3)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", client))
        squatter.listen()
        server = EmbeddedServer(
            ServerSpec(
                name="blocked",
                client_port=client,
                cluster_port=cluster,
                http_port=http,
                store_dir=tmp_path / "nats",
            )
        )
        try:
            started = time.monotonic()
            with pytest.raises(ServerStartError) as err:
                server.start(timeout=10)
            assert time.monotonic() - started < 5  # it noticed the exit, not the deadline
            assert "address already in use" in err.value.log_tail.lower()
            assert "nats-server log (tail)" in str(err.value)
            assert not server.running
        finally:
            server.stop()


_CHILD = """
import sys
from harmony.mesh.ports import free_ports
from harmony.mesh.server import EmbeddedServer, ServerSpec
c, r, h = free_ports(3)
spec = ServerSpec(name="child", client_port=c, cluster_port=r, http_port=h, store_dir=sys.argv[1])
server = EmbeddedServer(spec)
server.start(timeout=15)
print(server.pid, flush=True)
sys.stdin.readline()  # then return: a normal interpreter exit
"""


@pytest.mark.mesh
@pytest.mark.parametrize("how", ["normal-exit", "sigterm"])
def test_servers_stop_when_python_exits(how: str, tmp_path: Path) -> None:
    """A Python process that started a server and did not stop it still leaves none behind."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path / "nats")],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    pid = 0
    try:
        assert proc.stdin is not None and proc.stdout is not None
        line = proc.stdout.readline()  # bounded by the child's own start timeout
        assert line.strip().isdigit(), f"child printed {line!r}"
        pid = int(line)
        assert pid_alive(pid)
        if how == "sigterm":
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == -signal.SIGTERM
        else:
            proc.stdin.write("\n")
            proc.stdin.flush()
            assert proc.wait(timeout=15) == 0
        wait_until(lambda: not pid_alive(pid), timeout=10, message=f"server {pid} outlived us")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if pid and pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)


@pytest.mark.mesh
def test_cluster_r3_kv_survives_sigkill_of_stream_leader(
    make_nats_cluster: Callable[..., list[Node]],
) -> None:
    nodes = make_nats_cluster(3, supervise=False)
    by_name = {n.name: n for n in nodes}

    async def scenario() -> tuple[str, float]:
        nc = await _connect(*(n.client_url for n in nodes))
        try:
            js = nc.jetstream(timeout=2)
            kv = await js.create_key_value(bucket="r3", replicas=3, history=1)
            # A just-created R3 stream answers once its first leader is elected: on a loaded
            # machine that can take longer than one request timeout.
            ready_by = time.monotonic() + 20
            while True:
                try:
                    rev = await kv.create("lease", b"0")
                    break
                except KeyWrongLastSequenceError:  # an earlier try landed; its answer did not
                    rev = (await kv.get("lease")).revision
                    break
                except (NoStreamResponseError, TimeoutError, nats.errors.TimeoutError):
                    if time.monotonic() > ready_by:
                        raise
                    await asyncio.sleep(0.1)
            info = await js.stream_info("KV_r3")
            assert info.cluster is not None and info.cluster.leader in by_name
            assert len(info.cluster.replicas or []) == 2
            victim = info.cluster.leader
            by_name[victim].server.kill()
            killed_at = time.monotonic()
            deadline = killed_at + 20
            value = 1
            while True:
                try:
                    rev = await kv.update("lease", str(value).encode(), last=rev)
                    break
                except KeyWrongLastSequenceError:
                    raise
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.05)
            resumed = time.monotonic() - killed_at
            entry = await kv.get("lease")
            assert (entry.value, entry.revision) == (b"1", rev)
            info = await js.stream_info("KV_r3")
            assert info.cluster is not None and info.cluster.leader not in (None, victim)
            return victim, resumed
        finally:
            await nc.close()

    victim, resumed = run_async(scenario(), timeout=40)
    print(f"writes resumed {resumed:.2f} s after SIGKILL of stream leader {victim}")
    assert resumed < 20
    survivors = [n for n in nodes if n.name != victim]
    assert all(n.server.running for n in survivors)

    # The killed server comes back, rejoins, and the cluster is whole again.
    by_name[victim].server.start()
    wait_jetstream_ready(
        [n.http_url for n in nodes],
        client_urls=[n.client_url for n in nodes],
        replicas=3,
        timeout=30,
    )
