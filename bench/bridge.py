"""Remote actor messaging over loopback NATS, next to local Pykka, measured in one run.

    python bench/bridge.py [--asks 3000] [--tells 100000] [--rounds 3]

Agent A is a real `harmony agent` process (with its embedded nats-server); this process is
the other side: it asks A's site actor `Ping` and tells it `Notice`, over the mesh. The
baseline is the same actor class started locally in this process, asked and told the same
way through Pykka. Prints percentiles and ratios (this machine is noisy: compare ratios).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from harmony.actors.base import AgentContext
from harmony.actors.board import Board, PeerView
from harmony.actors.clock import SystemClock
from harmony.actors.messages import GetNotices, Notice, Notices, Ping
from harmony.actors.site import SITE_PATH, SiteActor
from harmony.actors.timers import Scheduler
from harmony.config import SiteConfig, Timings
from harmony.mesh.connection import MeshConnection
from harmony.mesh.remote import ActorDirectory, LocalRef, RemoteRef
from harmony.sim.launch import LocalMesh


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def ask_latencies(ref: Any, n: int) -> list[float]:
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--asks", type=int, default=3000)
    ap.add_argument("--tells", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="harmony-bench-") as tmp:
        mesh = LocalMesh(
            Path(tmp),
            mesh="bench",
            sites=("a",),
            log_level="warning",
            timings=Timings(heartbeat_interval=1.0),
        )
        try:
            with console.status("starting agent a (embedded nats-server)..."):
                mesh.start()
            conn = MeshConnection(mesh.client_urls(), "bench").start()
            conn.wait_connected(10)
            remote = RemoteRef(conn, "bench", "a", SITE_PATH, 5.0)
            local, actor, scheduler = local_site_actor()
            rows: dict[str, list[float]] = {k: [] for k in ("la", "ra", "lt", "rt")}
            for r in range(args.rounds):
                console.log(f"round {r + 1}/{args.rounds}")
                rows["la"] += ask_latencies(local, args.asks)
                rows["ra"] += ask_latencies(remote, args.asks)
                rows["lt"].append(tell_rate(local, args.tells))
                rows["rt"].append(tell_rate(remote, args.tells))
            actor.stop()
            scheduler.stop()
            conn.close()
        finally:
            mesh.stop()
    la, ra = rows["la"], rows["ra"]
    lt, rt = statistics.median(rows["lt"]), statistics.median(rows["rt"])
    t = Table(title=f"bridge: {args.rounds} rounds, {args.asks} asks and {args.tells} tells each")
    for col in ("measure", "local Pykka", "remote (NATS)", "ratio remote/local", "target"):
        t.add_column(col, justify="right" if col != "measure" else "left")
    for q, target in ((0.5, 0.5), (0.99, 2.0)):
        lq, rq = percentile(la, q), percentile(ra, q)
        ok = "ok" if rq <= target else "MISSED"
        t.add_row(
            f"ask p{int(q * 100)} (ms)",
            f"{lq:.3f}",
            f"{rq:.3f}",
            f"{rq / lq:.1f}x",
            f"<= {target} ms  {ok}",
        )
    ok = "ok" if rt >= 0.5 * lt else "MISSED"
    t.add_row(
        "tell throughput (msg/s, median)",
        f"{lt:,.0f}",
        f"{rt:,.0f}",
        f"{rt / lt:.2f}",
        f">= 0.50  {ok}",
    )
    console.print(t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
