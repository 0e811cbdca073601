"""Remote actor messaging over loopback NATS, next to local Pykka, measured in one run.

    python bench/bridge.py [--rounds 5] [--asks 3000] [--tells 100000] [--quick]
                           [--fast-paths all|none|write|dispatch] [--json out.json]

Agent A is a real `harmony agent` process (with its embedded nats-server); this process is
the other side: it asks A's site actor `Ping` and tells it `Notice`, over the mesh. The
baseline is the same actor class started locally in this process, asked and told the same
way through Pykka. Each round measures local asks, remote asks, local tells, remote tells, in
that order; the table shows the median over rounds of each round's percentile (and the range),
so one noisy round does not decide the result. This machine is shared: compare ratios, and
look at the load average printed with the table.

`--fast-paths` sets HARMONY_MESH_FAST_PATHS for this process and for the agent it starts
(see harmony/mesh/fastpaths.py); the default is the agent's default (all).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rich.console import Console
from rich.table import Table

from harmony.actors.base import AgentContext
from harmony.actors.board import Board, PeerView
from harmony.actors.clock import SystemClock
from harmony.actors.messages import GetNotices, Notice, Notices, Ping
from harmony.actors.site import SITE_PATH, SiteActor
from harmony.actors.timers import Scheduler
from harmony.config import SiteConfig, Timings
from harmony.mesh import connection
from harmony.mesh.connection import MeshConnection
from harmony.mesh.remote import ActorDirectory, LocalRef, RemoteRef
from harmony.sim.launch import LocalMesh

# getattr: the same script also measures the bridge as it was before the fast paths, for
# BENCHMARKS.md (run with PYTHONPATH pointing at a checkout of the old harmony/).
FAST_PATHS_ENV = getattr(connection, "FAST_PATHS_ENV", "HARMONY_MESH_FAST_PATHS")

TARGET_P50_MS = 0.5
TARGET_P99_MS = 2.0
TARGET_TELL_RATIO = 0.5


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def ask_latencies(ref: Any, n: int) -> list[float]:
    """Milliseconds per blocking ask, one ask at a time."""
    msg = Ping(text="x")
    for _ in range(min(200, n)):  # warm up
        ref.ask(msg, timeout=5)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        ref.ask(msg, timeout=5)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def tell_rate(ref: Any, n: int) -> float:
    """Tells per second until the receiver has handled all n (not just until they are sent)."""
    before = ref.ask(GetNotices(), timeout=10)
    assert isinstance(before, Notices)
    msg = Notice(text="n", sender="bench")
    t0 = time.perf_counter()
    for _ in range(n):
        ref.tell(msg)
    deadline = time.monotonic() + 120
    while True:
        got = ref.ask(GetNotices(), timeout=10)
        if got.total - before.total >= n:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"receiver saw {got.total - before.total} of {n} tells")
        time.sleep(0.001)
    return n / (time.perf_counter() - t0)


class _RawNats:
    """A blocking socket speaking just enough NATS protocol for `floor_latencies`."""

    def __init__(self, url: str) -> None:
        u = urlparse(url)
        self.sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 4222), 5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")
        self.file.readline()  # INFO
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


def floor_latencies(url: str, n: int) -> list[float]:
    """Milliseconds per request/reply between two blocking sockets through the same
    nats-server: what one round trip costs on this machine without any of our runtime
    (no event loop, no actor thread, no hand-over between threads)."""
    responder, requester = _RawNats(url), _RawNats(url)
    responder.sock.sendall(b"SUB bench.floor 1\r\n")
    responder.sync()
    requester.sock.sendall(b"SUB bench.floor.reply 1\r\n")
    requester.sync()

    def serve() -> None:
        try:
            while True:
                reply, data = responder.next_msg()
                responder.sock.sendall(b"PUB %s %d\r\n%s\r\n" % (reply, len(data), data))
        except (OSError, EOFError, ValueError):
            return

    threading.Thread(target=serve, name="floor-responder", daemon=True).start()
    out = []
    for i in range(n + min(200, n)):
        t0 = time.perf_counter()
        requester.sock.sendall(b"PUB bench.floor bench.floor.reply 4\r\nping\r\n")
        requester.next_msg()
        if i >= min(200, n):
            out.append((time.perf_counter() - t0) * 1000)
    for raw in (requester, responder):
        raw.close()
    return out


def local_site_actor() -> tuple[LocalRef, Any, Scheduler]:
    cfg = SiteConfig(mesh="bench", site="local", timings=Timings(heartbeat_interval=60))
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
    return LocalRef(ctx.directory, SITE_PATH, 5.0), actor, scheduler


def summarize(rounds: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per measure: median over rounds, and the lowest and highest round."""
    out = {}
    for key in rounds[0]:
        vals = [r[key] for r in rounds]
        out[key] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
    return out


def print_table(
    console: Console, args: argparse.Namespace, s: dict[str, dict[str, float]], n: int
) -> None:
    def cell(key: str, fmt: str) -> str:
        v = s[key]
        if n == 1:
            return format(v["median"], fmt)
        return f"{format(v['median'], fmt)}  ({format(v['min'], fmt)}-{format(v['max'], fmt)})"

    t = Table(
        title=f"bridge: {n} round(s) of {args.asks} asks and {args.tells} tells; "
        "median of rounds (range)"
    )
    for col in ("measure", "local Pykka", "remote (NATS)", "remote/local", "target"):
        t.add_column(col, justify="left" if col == "measure" else "right")
    for q in ("p50", "p99"):
        t.add_row(
            f"floor {q} (ms)",
            "",
            cell(f"floor_{q}", ".3f"),
            "",
            "raw sockets via nats-server",
        )
    for q, target in (("p50", TARGET_P50_MS), ("p99", TARGET_P99_MS)):
        r = s[f"remote_ask_{q}"]["median"]
        lo = s[f"local_ask_{q}"]["median"]
        t.add_row(
            f"ask {q} (ms)",
            cell(f"local_ask_{q}", ".3f"),
            cell(f"remote_ask_{q}", ".3f"),
            f"{r / lo:.1f}x",
            f"<= {target} ms  {'ok' if r <= target else 'MISSED'}",
        )
    lt, rt = s["local_tell_rate"]["median"], s["remote_tell_rate"]["median"]
    t.add_row(
        "tell rate (msg/s)",
        cell("local_tell_rate", ",.0f"),
        cell("remote_tell_rate", ",.0f"),
        f"{rt / lt:.2f}",
        f">= {TARGET_TELL_RATIO:.2f}  {'ok' if rt >= TARGET_TELL_RATIO * lt else 'MISSED'}",
    )
    console.print(t)


def main() -> int:
    # SIGTERM must unwind through the `finally` that stops the mesh, like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--asks", type=int, default=3000, help="asks per round (each side)")
    ap.add_argument("--tells", type=int, default=100_000, help="tells per round (each side)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="1 round, 1000 asks, 20000 tells")
    ap.add_argument("--fast-paths", help=f"set {FAST_PATHS_ENV} here and in the agent")
    ap.add_argument("--json", type=Path, help="also write every round's numbers here")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.asks, args.tells = 1, 1000, 20_000
    if args.fast_paths is not None:
        os.environ[FAST_PATHS_ENV] = args.fast_paths  # inherited by the agent process
    console = Console(width=None if sys.stdout.isatty() else 140)
    load_before = os.getloadavg()
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="harmony-bench-") as tmp:
        mesh = LocalMesh(
            Path(tmp),
            mesh="bench",
            sites=("a",),
            log_level="warning",
            timings=Timings(heartbeat_interval=1.0),
            secure=False,  # TLS rows: issue 9 item 6 (the raw floor speaks plaintext)
        )
        local, actor, scheduler = local_site_actor()
        conn: MeshConnection | None = None
        try:
            with console.status("starting agent a (embedded nats-server)..."):
                mesh.start()
            conn = MeshConnection(mesh.client_urls(), "bench").start()
            conn.wait_connected(10)
            remote = RemoteRef(conn, "bench", "a", SITE_PATH, 5.0)
            for r in range(args.rounds):
                la = ask_latencies(local, args.asks)
                ra = ask_latencies(remote, args.asks)
                lt = tell_rate(local, args.tells)
                rt = tell_rate(remote, args.tells)
                fl = floor_latencies(mesh.client_urls()[0], args.asks)
                row = {
                    "floor_p50": percentile(fl, 0.5),
                    "floor_p99": percentile(fl, 0.99),
                    "local_ask_p50": percentile(la, 0.5),
                    "local_ask_p99": percentile(la, 0.99),
                    "remote_ask_p50": percentile(ra, 0.5),
                    "remote_ask_p99": percentile(ra, 0.99),
                    "local_tell_rate": lt,
                    "remote_tell_rate": rt,
                }
                rounds.append(row)
                console.log(
                    f"round {r + 1}/{args.rounds}: remote ask p50 {row['remote_ask_p50']:.3f} "
                    f"p99 {row['remote_ask_p99']:.3f} ms, local p50 {row['local_ask_p50']:.3f} "
                    f"p99 {row['local_ask_p99']:.3f} ms; floor p50 {row['floor_p50']:.3f} "
                    f"p99 {row['floor_p99']:.3f} ms; tells remote/local {rt / lt:.2f} "
                    f"(load {os.getloadavg()[0]:.2f})"
                )
            fast = sorted(getattr(conn, "fast_paths", ["(unknown: old bridge)"]))
            stats = dict(getattr(conn, "stats", {}))
        finally:  # also on Ctrl-C: the local actor's threads would keep the process alive
            actor.stop()
            scheduler.stop()
            if conn is not None:
                conn.close()
            mesh.stop()
    summary = summarize(rounds)
    print_table(console, args, summary, len(rounds))
    load_after = os.getloadavg()
    console.print(
        f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
        f"fast paths here: {', '.join(fast) or 'none'}; publishes here: {stats}"
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "cpus": os.cpu_count(),
                    "load": [load_before, load_after],
                    "fast_paths": fast,
                    "rounds": rounds,
                    "summary": summary,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
