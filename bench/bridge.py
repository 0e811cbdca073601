"""Remote actor messaging over loopback NATS, plain and TLS, next to local Pykka, in one run.

    python bench/bridge.py [--rounds 5] [--asks 3000] [--tells 100000] [--quick]
                           [--fast-paths all|none|write|dispatch] [--json out.json]
                           [--compare REV]

The benchmark starts two nats-servers (free loopback ports): one plain, one with mutual TLS on
its client port (a CA, server and client certificates made for this run, `verify: true`).
A separate process is the remote site (`bench/bridge_site.py`): a `SiteActor` behind a
`Bridge` on a `MeshConnection` to each server. This process asks it `Ping` and tells it
`Notice` through a `RemoteRef` over each server; the baseline is the same actor class started
here and called through Pykka. Next to each, two floors through the same server: two plain
blocking sockets (TLS-wrapped on the TLS server; no event loop at all), and nats-py alone
(`nc.request` against a nats-py responder in the site process, same certificates).

Each round measures local asks, then per mode (plain, TLS; the order alternates by round)
remote asks and both floors, then local tells, then per mode remote tells and nats-py's
publish rate. The table shows the median over rounds of each round's figure, with the range,
so one noisy round does not decide. This machine is shared: compare ratios, and look at the
load average printed with the table.

`--fast-paths` sets HARMONY_MESH_FAST_PATHS for this process and the site process (see
harmony/mesh/fastpaths.py); the default is all.

`--compare REV` measures this checkout against git revision REV in one run, rounds
interleaved, each round in a fresh process on either tree (see bench/bridge_compare.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bridge_compare
from bridge_site import (
    MESH,
    SITE,
    NatsPyFloor,
    TlsDir,
    raw_floor_latencies,
    site_actor,
)
from rich.console import Console
from rich.table import Table

import harmony
from harmony.actors.messages import GetNotices, Notice, Notices, Ping
from harmony.actors.site import SITE_PATH
from harmony.mesh import connection, subjects
from harmony.mesh.connection import MeshConnection
from harmony.mesh.ports import free_ports
from harmony.mesh.remote import RemoteRef
from harmony.mesh.server import EmbeddedServer, ServerSpec

# getattr: the same script can measure an older bridge (PYTHONPATH at an old harmony/).
FAST_PATHS_ENV = getattr(connection, "FAST_PATHS_ENV", "HARMONY_MESH_FAST_PATHS")

MODES = ("plain", "tls")
TARGET_P50_MS = 0.5  # plain (issue 6)
TARGET_P99_MS = 2.0
TARGET_TLS_P50_MS = 0.6  # TLS (issue 9)
TARGET_TLS_FLOOR_RATIO = 1.5  # TLS ask p50 / TLS nats-py floor p50
TARGET_TELL_RATIO = 1.0  # TLS remote tell rate / local Pykka tell rate


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
    def med(key: str) -> float:
        return s[key]["median"]

    def cell(key: str, fmt: str) -> str:
        v = s[key]
        if n == 1:
            return format(v["median"], fmt)
        return f"{format(v['median'], fmt)}  ({format(v['min'], fmt)}-{format(v['max'], fmt)})"

    def ok(good: bool) -> str:
        return "ok" if good else "MISSED"

    t = Table(
        title=f"bridge: {n} round(s) of {args.asks} asks and {args.tells} tells; "
        "median of rounds (range)"
    )
    for col in ("measure", "local Pykka", "plain", "TLS", "TLS/plain", "target"):
        t.add_column(col, justify="left" if col == "measure" else "right")
    for floor, label in (("raw", "floor: raw sockets"), ("npy", "floor: nats-py")):
        for q in ("p50", "p99"):
            p, x = f"plain_{floor}_{q}", f"tls_{floor}_{q}"
            t.add_row(
                f"{label} {q} (ms)",
                "",
                cell(p, ".3f"),
                cell(x, ".3f"),
                f"{med(x) / med(p):.2f}x",
                "",
            )
    for q in ("p50", "p99"):
        pm, xm = med(f"plain_ask_{q}"), med(f"tls_ask_{q}")
        plain_target = TARGET_P50_MS if q == "p50" else TARGET_P99_MS
        target = f"plain <= {plain_target} ms {ok(pm <= plain_target)}"
        if q == "p50":
            target += f"; TLS <= {TARGET_TLS_P50_MS} ms {ok(xm <= TARGET_TLS_P50_MS)}"
        t.add_row(
            f"ask {q} (ms)",
            cell(f"local_ask_{q}", ".3f"),
            cell(f"plain_ask_{q}", ".3f"),
            cell(f"tls_ask_{q}", ".3f"),
            f"{xm / pm:.2f}x",
            target,
        )
    ratio = {m: med(f"{m}_ask_p50") / med(f"{m}_npy_p50") for m in MODES}
    t.add_row(
        "ask p50 / nats-py floor p50",
        "",
        f"{ratio['plain']:.2f}x",
        f"{ratio['tls']:.2f}x",
        "",
        f"TLS <= {TARGET_TLS_FLOOR_RATIO}x {ok(ratio['tls'] <= TARGET_TLS_FLOOR_RATIO)}",
    )
    lt, pt, xt = med("local_tell_rate"), med("plain_tell_rate"), med("tls_tell_rate")
    t.add_row(
        "tell rate (msg/s)",
        cell("local_tell_rate", ",.0f"),
        cell("plain_tell_rate", ",.0f"),
        cell("tls_tell_rate", ",.0f"),
        f"{xt / pt:.2f}x",
        f"TLS/local {xt / lt:.2f} >= {TARGET_TELL_RATIO:.2f} {ok(xt >= TARGET_TELL_RATIO * lt)}",
    )
    t.add_row(
        "floor: nats-py publish (msg/s)",
        "",
        cell("plain_pub_rate", ",.0f"),
        cell("tls_pub_rate", ",.0f"),
        f"{med('tls_pub_rate') / med('plain_pub_rate'):.2f}x",
        "one NATS message each",
    )
    console.print(t)


def start_server(root: Path, name: str, extra_conf: str) -> EmbeddedServer:
    client, cluster, http = free_ports(3)
    spec = ServerSpec(
        name=name,
        client_port=client,
        cluster_port=cluster,
        http_port=http,
        store_dir=root / name,
        extra_conf=extra_conf,
    )
    server = EmbeddedServer(spec)
    server.start(timeout=30)
    return server


def start_site(spec: dict[str, Any]) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """The remote site process; returns once it says ready (its fast paths)."""
    script = str(Path(__file__).with_name("bridge_site.py"))
    proc = subprocess.Popen(
        [sys.executable, script, "--serve", json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if sel.select(timeout=0.5):
            line = proc.stdout.readline()
            if line.startswith("ready "):
                return proc, json.loads(line[len("ready ") :])
    stop_site(proc)
    raise SystemExit("the remote site process did not become ready within 60 s")


def stop_site(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """Closing its stdin ends it (a site that hangs is killed); returns its publish stats."""
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        return {}
    for line in out.splitlines():
        if line.startswith("stats "):
            return dict(json.loads(line[len("stats ") :]))
    return {}


def measure_round(
    r: int,
    args: argparse.Namespace,
    local: Any,
    remotes: dict[str, RemoteRef],
    urls: dict[str, str],
    tls: TlsDir,
    floor: NatsPyFloor,
) -> dict[str, float]:
    order = MODES if r % 2 == 0 else MODES[::-1]  # neither mode always goes first
    row: dict[str, float] = {}

    def put(key: str, lat: list[float]) -> None:
        row[f"{key}_p50"] = percentile(lat, 0.5)
        row[f"{key}_p99"] = percentile(lat, 0.99)

    put("local_ask", ask_latencies(local, args.asks))
    for m in order:
        ctx = tls.client_context() if m == "tls" else None
        put(f"{m}_ask", ask_latencies(remotes[m], args.asks))
        put(f"{m}_npy", floor.ask_latencies(m, args.asks))
        put(f"{m}_raw", raw_floor_latencies(urls[m], args.asks, ctx))
    row["local_tell_rate"] = tell_rate(local, args.tells)
    for m in order:
        row[f"{m}_tell_rate"] = tell_rate(remotes[m], args.tells)
        row[f"{m}_pub_rate"] = floor.publish_rate(m, args.tells)
    return row


def main() -> int:
    # SIGTERM must unwind through the `finally` that stops everything, like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--asks", type=int, default=3000, help="asks per round (each measure)")
    ap.add_argument("--tells", type=int, default=100_000, help="tells per round (each measure)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="1 round, 1000 asks, 20000 tells")
    ap.add_argument("--fast-paths", help=f"set {FAST_PATHS_ENV} here and in the site process")
    ap.add_argument("--json", type=Path, help="also write every round's numbers here")
    ap.add_argument("--compare", metavar="REV", help="this checkout against git revision REV")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.asks, args.tells = 1, 1000, 20_000
    console = Console(width=None if sys.stdout.isatty() else 150)
    if args.compare is not None:
        return bridge_compare.compare(args, console)
    if args.fast_paths is not None:
        os.environ[FAST_PATHS_ENV] = args.fast_paths  # inherited by the site process
    load_before = os.getloadavg()
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="harmony-bench-") as tmp:
        root = Path(tmp)
        tls = TlsDir.create(root / "tls")
        servers: list[EmbeddedServer] = []
        conns: list[MeshConnection] = []
        site: subprocess.Popen[str] | None = None
        site_stats: dict[str, Any] = {}
        floor: NatsPyFloor | None = None
        local, _directory, actor, scheduler = site_actor()
        try:
            with console.status("starting nats-servers and the remote site..."):
                servers.append(start_server(root, "plain", ""))
                servers.append(start_server(root, "tls", tls.server_conf()))
                urls = dict(zip(MODES, (s.client_url for s in servers), strict=True))
                site, site_fast = start_site({"servers": urls, "tls_dir": str(tls.path)})
            remotes = {}
            for m in MODES:
                conn = MeshConnection(
                    [urls[m]], f"bench-{m}", tls=tls.client_context() if m == "tls" else None
                ).start()
                conns.append(conn)
                conn.wait_connected(30)
                remotes[m] = RemoteRef(conn, MESH, SITE, SITE_PATH, 5.0, sender=subjects.OPERATOR)
            floor = NatsPyFloor(
                {m: (urls[m], tls.client_context() if m == "tls" else None) for m in MODES}
            ).start()
            for r in range(args.rounds):
                row = measure_round(r, args, local, remotes, urls, tls, floor)
                rounds.append(row)
                console.log(
                    f"round {r + 1}/{args.rounds}: ask p50 plain {row['plain_ask_p50']:.3f} "
                    f"TLS {row['tls_ask_p50']:.3f} (nats-py floor {row['plain_npy_p50']:.3f} / "
                    f"{row['tls_npy_p50']:.3f}, raw {row['plain_raw_p50']:.3f} / "
                    f"{row['tls_raw_p50']:.3f}) ms; local {row['local_ask_p50']:.3f} ms; "
                    f"tells/local plain {row['plain_tell_rate'] / row['local_tell_rate']:.2f} "
                    f"TLS {row['tls_tell_rate'] / row['local_tell_rate']:.2f} "
                    f"(load {os.getloadavg()[0]:.2f})"
                )
            fast = {c.name: sorted(getattr(c, "fast_paths", ["(unknown)"])) for c in conns}
            stats = {c.name: dict(getattr(c, "stats", {})) for c in conns}
        finally:  # also on Ctrl-C: the local actor's threads would keep the process alive
            actor.stop()
            scheduler.stop()
            if floor is not None:
                floor.stop()
            for conn in conns:
                conn.close()
            if site is not None:
                site_stats = stop_site(site)
            for server in reversed(servers):
                server.stop()
    summary = summarize(rounds)
    print_table(console, args, summary, len(rounds))
    load_after = os.getloadavg()
    console.print(
        f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
        f"fast paths here {fast}, at the site {site_fast}; publishes here: {stats}, "
        f"at the site: {site_stats}"
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "harmony": str(Path(harmony.__file__).parent),
                    "cpus": os.cpu_count(),
                    "load": [load_before, load_after],
                    "fast_paths": fast,
                    "site_fast_paths": site_fast,
                    "stats": stats,
                    "site_stats": site_stats,
                    "rounds": rounds,
                    "summary": summary,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
