"""The parts of bench/bridge.py that are not the measurement loop: TLS material, the remote
site process, and the two floors (plain sockets, and nats-py with nothing of ours on top).

    python bench/bridge_site.py --serve '<json>'   # the remote site (bench/bridge.py starts it)

The remote site is a separate process, as a real remote site is: a `SiteActor` behind a
`Bridge` on one `MeshConnection` per server (plain and TLS), plus a nats-py responder for the
floor. It prints ``ready`` once every subscription is in place and runs until its stdin
closes, so it never outlives the benchmark, not even when the benchmark is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import trustme
from nats.aio.client import Client
from nats.aio.msg import Msg

from harmony.actors.base import AgentContext
from harmony.actors.board import Board, PeerView
from harmony.actors.clock import SystemClock
from harmony.actors.site import SITE_PATH, SiteActor
from harmony.actors.timers import Scheduler
from harmony.config import SiteConfig, Timings
from harmony.mesh.connection import MeshConnection
from harmony.mesh.remote import ActorDirectory, Bridge, LocalRef

MESH, SITE = "bench", "a"
FLOOR_SUBJECT = "bench.floor"
COUNT_SUBJECT = "bench.count"


# ------------------------------------------------------------------------------ TLS material
@dataclass(frozen=True)
class TlsDir:
    """Certificates made for one run: a CA, the servers' certificate, one client's."""

    path: Path

    @classmethod
    def create(cls, path: Path) -> TlsDir:
        path.mkdir(parents=True)
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(path / "ca.pem"))
        server = ca.issue_cert("127.0.0.1", "localhost")
        server.cert_chain_pems[0].write_to_path(str(path / "server.pem"))
        server.private_key_pem.write_to_path(str(path / "server.key"))
        client = ca.issue_cert("bench.harmony.test")
        client.private_key_and_cert_chain_pem.write_to_path(str(path / "client.pem"))
        return cls(path)

    def server_conf(self) -> str:
        """nats-server's top-level `tls` block: TLS on the client port, client certificates
        required and verified against the CA."""
        p = self.path
        return (
            "tls {\n"
            f"  cert_file: {json.dumps(str(p / 'server.pem'))}\n"
            f"  key_file: {json.dumps(str(p / 'server.key'))}\n"
            f"  ca_file: {json.dumps(str(p / 'ca.pem'))}\n"
            "  verify: true\n"
            "  timeout: 5\n"
            "}\n"
        )

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.path / "ca.pem"))
        ctx.load_cert_chain(str(self.path / "client.pem"))
        return ctx


# ------------------------------------------------------------------------------ the site
def site_actor() -> tuple[LocalRef, ActorDirectory, Any, Scheduler]:
    """A `SiteActor` as an agent starts it (no heartbeats: no bridge of its own)."""
    cfg = SiteConfig(mesh=MESH, site="local", timings=Timings(heartbeat_interval=60))
    scheduler = Scheduler()
    ctx = AgentContext(
        config=cfg,
        board=Board(),
        directory=ActorDirectory(),
        scheduler=scheduler,
        clock=SystemClock(),
        bridge=None,
        incarnation="bench",
        on_escalate=lambda _r: None,
        peer_view=PeerView(),
    )
    actor = SiteActor.start(ctx, SITE_PATH, None)
    return LocalRef(ctx.directory, SITE_PATH, 5.0), ctx.directory, actor, scheduler


class FloorResponder:
    """nats-py alone, on its own loop thread: echoes requests and counts publishes."""

    def __init__(self, targets: dict[str, tuple[str, ssl.SSLContext | None]]) -> None:
        self.targets = targets
        self.loop = _uvloop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.clients: list[Client] = []
        self.counts: dict[str, int] = {}

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)

    async def _start(self) -> None:
        for mode, (url, ctx) in self.targets.items():
            nc = Client()
            await nc.connect(servers=[url], tls=ctx, name=f"floor-{mode}")
            self.counts[mode] = 0

            async def echo(msg: Msg, nc: Client = nc) -> None:
                await nc.publish(msg.reply, msg.data)

            async def count(msg: Msg, mode: str = mode) -> None:
                if msg.reply:
                    await msg.respond(str(self.counts[mode]).encode())
                else:
                    self.counts[mode] += 1

            await nc.subscribe(FLOOR_SUBJECT, cb=echo)
            await nc.subscribe(COUNT_SUBJECT, cb=count)
            await nc.flush()
            self.clients.append(nc)

    def stop(self) -> None:
        async def close() -> None:
            for nc in self.clients:
                with contextlib.suppress(Exception):
                    await nc.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def serve(spec: dict[str, Any]) -> int:
    """The remote site: one bridge per server, one site actor behind both."""
    tls = TlsDir(Path(spec["tls_dir"]))
    targets = {
        mode: (url, tls.client_context() if mode == "tls" else None)
        for mode, url in spec["servers"].items()
    }
    _local, directory, actor, scheduler = site_actor()
    conns: list[MeshConnection] = []
    floor = FloorResponder(targets)
    try:
        for mode, (url, ctx) in targets.items():
            conn = MeshConnection([url], f"bench-site-{mode}", tls=ctx).start()
            conns.append(conn)
            conn.wait_connected(30)
            # No per-sender rate limit: back-to-back asks and tells are the point here, and
            # an agent's limit (2000 frames/s a sender) would refuse them.
            bridge = Bridge(conn, MESH, SITE, directory, 5.0, rate=None)
            bridge.start()
            if not bridge.wait_ready(30):
                raise SystemExit(f"bridge on {url} never became ready")
        floor.start()
        print("ready " + json.dumps({c.name: sorted(c.fast_paths) for c in conns}), flush=True)
        sys.stdin.read()  # until the benchmark closes our stdin (or dies)
        print("stats " + json.dumps({c.name: c.stats for c in conns}), flush=True)
    finally:
        floor.stop()
        for conn in conns:
            conn.close()
        actor.stop()
        scheduler.stop()
    return 0


# ------------------------------------------------------------------------------ floors
class RawNats:
    """A blocking socket (TLS-wrapped when given a context) speaking just enough NATS."""

    def __init__(self, url: str, ctx: ssl.SSLContext | None = None) -> None:
        u = urlparse(url)
        host = u.hostname or "127.0.0.1"
        sock = socket.create_connection((host, u.port or 4222), 5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        info = b""
        while not info.endswith(b"\r\n"):  # INFO is sent in the clear, before TLS
            info += sock.recv(1)
        self.sock: socket.socket = (
            ctx.wrap_socket(sock, server_hostname=host) if ctx is not None else sock
        )
        self.file = self.sock.makefile("rb")
        self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n')

    def close(self) -> None:
        """Shut the socket down (this also ends a responder thread blocked reading it)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.file.close()
        self.sock.close()

    def sync(self) -> None:
        """PING/PONG: the server has processed everything sent before."""
        self.sock.sendall(b"PING\r\n")
        while self.file.readline() != b"PONG\r\n":
            pass

    def next_msg(self) -> tuple[bytes, bytes]:
        """(reply subject, payload) of the next MSG; answers server PINGs on the way."""
        while True:
            line = self.file.readline()
            if not line:
                raise EOFError("nats-server closed the connection")
            if line.startswith(b"MSG"):
                parts = line.split()
                reply = parts[3] if len(parts) == 5 else b""
                return reply, self.file.read(int(parts[-1]) + 2)[:-2]
            if line.startswith(b"PING"):
                self.sock.sendall(b"PONG\r\n")


def raw_floor_latencies(url: str, n: int, ctx: ssl.SSLContext | None = None) -> list[float]:
    """Milliseconds per request/reply between two blocking sockets through one nats-server:
    a round trip without any event loop, actor or thread hand-over."""
    responder, requester = RawNats(url, ctx), RawNats(url, ctx)
    responder.sock.sendall(b"SUB bench.raw 1\r\n")
    responder.sync()
    requester.sock.sendall(b"SUB bench.raw.reply 1\r\n")
    requester.sync()

    def serve_raw() -> None:
        try:
            while True:
                reply, data = responder.next_msg()
                responder.sock.sendall(b"PUB %s %d\r\n%s\r\n" % (reply, len(data), data))
        except (OSError, EOFError, ValueError):
            return

    threading.Thread(target=serve_raw, name="floor-responder", daemon=True).start()
    out = []
    warm = min(200, n)
    for i in range(n + warm):
        t0 = time.perf_counter()
        requester.sock.sendall(b"PUB bench.raw bench.raw.reply 4\r\nping\r\n")
        requester.next_msg()
        if i >= warm:
            out.append((time.perf_counter() - t0) * 1000)
    for raw in (requester, responder):
        raw.close()
    return out


class NatsPyFloor:
    """The asking side of the nats-py floor: `nc.request` and `nc.publish`, timed inside the
    loop (no thread hand-over counted), against the site process's `FloorResponder`."""

    def __init__(self, targets: dict[str, tuple[str, ssl.SSLContext | None]]) -> None:
        self.targets = targets
        self.loop = _uvloop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.clients: dict[str, Client] = {}

    def start(self) -> NatsPyFloor:
        self.thread.start()
        self._run(self._connect(), 30)
        return self

    def _run(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _connect(self) -> None:
        for mode, (url, ctx) in self.targets.items():
            nc = Client()
            await nc.connect(servers=[url], tls=ctx, name=f"floor-ask-{mode}")
            self.clients[mode] = nc

    def ask_latencies(self, mode: str, n: int) -> list[float]:
        async def run() -> list[float]:
            nc = self.clients[mode]
            out = []
            warm = min(200, n)
            for i in range(n + warm):
                t0 = time.perf_counter()
                await nc.request(FLOOR_SUBJECT, b"ping", timeout=5)
                if i >= warm:
                    out.append((time.perf_counter() - t0) * 1000)
            return out

        result: list[float] = self._run(run(), 300)
        return result

    def publish_rate(self, mode: str, n: int) -> float:
        """Publishes per second until the responder has counted all n."""

        async def run() -> float:
            nc = self.clients[mode]
            before = int((await nc.request(COUNT_SUBJECT, b"", timeout=10)).data)
            t0 = time.perf_counter()
            for _ in range(n):
                await nc.publish(COUNT_SUBJECT, b"n")
            deadline = time.monotonic() + 120
            while int((await nc.request(COUNT_SUBJECT, b"", timeout=10)).data) - before < n:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the floor responder did not count {n} publishes")
                await asyncio.sleep(0.001)
            return n / (time.perf_counter() - t0)

        rate: float = self._run(run(), 300)
        return rate

    def stop(self) -> None:
        async def close() -> None:
            for nc in self.clients.values():
                with contextlib.suppress(Exception):
                    await nc.close()

        with contextlib.suppress(Exception):
            self._run(close(), 10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _uvloop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--serve", required=True, help="JSON: servers {mode: url}, tls_dir")
    return serve(json.loads(ap.parse_args().serve))


if __name__ == "__main__":
    sys.exit(main())
