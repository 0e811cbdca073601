"""`harmony status` at 1,000 sites: the summary view read from a real nats-server's KV.

    python bench/status.py [--sites 1000] [--runs 5]

One secure nats-server (TLS + nkeys, rendered from a mesh directory exactly as an agent's)
whose roster names N sites. Each site connects with its own nkey and writes one synthetic
`SiteSummary` into ``harmony-<mesh>-sites`` (its own key: the permissions allow no other),
acknowledged by JetStream. Then, as the operator:

* `collect_summaries` (one ordered consumer, the last value per key) on an open connection;
* the keys-then-get alternative (`KeyValue.keys()` + one `get` per key), for comparison
  (on a plaintext server with the same N summaries: the operator's permissions allow only
  the stream read);
* `harmony status --server URL --mesh M --identity DIR` end to end, as a subprocess: Python
  start-up, TLS, the read and the Rich rendering (what the issue's "under 2 s" is about).

Every process is stopped on exit. The numbers go to stdout as a table.

Latest results, and the command: BENCHMARKS.md, "status and TUI at 1,000 sites".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import nats
import nats.js.errors
from rich.console import Console
from rich.table import Table

from harmony.client import collect_summaries
from harmony.mesh import summaries
from harmony.mesh.connection import MeshConnection
from harmony.mesh.ports import free_ports
from harmony.mesh.server import EmbeddedServer, ServerSpec
from harmony.mesh.server_conf import ServerSecurity
from harmony.mesh.summaries import SiteSummary, Unhealthy
from harmony.security.identity import load_identity, site_identity
from harmony.security.material import init_mesh, new_user_seed, public_key
from harmony.security.permissions import site_inbox
from harmony.security.roster import dump_roster, load_roster

MESH = "big"
PHASES = ("running", "stopped", "stopped", "running", "unknown")


def _phase_counts(extra: str) -> dict[str, int]:
    """20 workloads: 10 running, 9 stopped, and one more in `extra`'s phase."""
    counts = {"running": 10, "stopped": 9}
    counts[extra] = counts.get(extra, 0) + 1
    return counts


def site_name(i: int) -> str:
    return f"s{i:04}"


def synthetic(i: int) -> SiteSummary:
    """A site with 20 workloads; one in a hundred has a silent peer and a doubtful copy."""
    trouble = []
    if i % 100 == 7:
        trouble = [
            Unhealthy(what="peer s0001", why="silent"),
            Unhealthy(what="workload w3", why="FENCE UNCONFIRMED: probe failed"),
        ]
    return SiteSummary(
        site=site_name(i),
        incarnation=f"{i:012x}",
        state="running",
        wall=time.time(),
        interval=3600.0,  # never stale during the run
        workloads=_phase_counts(PHASES[i % 5]),
        placed=[f"w{i}-{k}" for k in range(20)],
        peers={"alive": 5},
        unhealthy=trouble,
        unhealthy_total=len(trouble),
    )


def make_mesh(root: Path, n: int) -> tuple[Path, dict[str, Path]]:
    """A mesh directory with site s0000 (a real site's material: the server's), an operator,
    and n-1 more sites that have only an nkey (they connect with s0000's certificate: the
    server verifies the certificate against the mesh CA and the user by the nkey)."""
    md = init_mesh(root / "mesh", MESH, {site_name(0): ()}, ["admin"])
    seeds = {site_name(0): site_identity(md.path, site_name(0)).seed_file}
    roster = load_roster(md.roster_file)
    sites = dict(roster.sites)
    (root / "seeds").mkdir()
    for i in range(1, n):
        seed = new_user_seed()
        path = root / "seeds" / f"{site_name(i)}.seed"
        path.write_bytes(seed)
        path.chmod(0o600)
        seeds[site_name(i)] = path
        sites[site_name(i)] = public_key(seed)
    md.roster_file.write_text(dump_roster(msgspec.structs.replace(roster, sites=sites)))
    return md.path, seeds


def start_server(root: Path, mesh_dir: Path | None) -> EmbeddedServer:
    client, cluster, http = free_ports(3)
    security = None
    if mesh_dir is not None:
        ident = site_identity(mesh_dir, site_name(0))
        security = ServerSecurity(ident, mesh_dir / "roster.toml", {})
    spec = ServerSpec(
        name="core",
        client_port=client,
        cluster_port=cluster,
        http_port=http,
        cluster_name=MESH,
        store_dir=root / ("secure" if security else "plain"),
        security=security,
    )
    server = EmbeddedServer(spec, supervise=False)
    server.start(timeout=60)
    return server


async def write_all(url: str, n: int, mesh_dir: Path | None, seeds: dict[str, Path]) -> float:
    """Every site writes its own summary on its own connection (50 at a time); seconds."""
    tls = site_identity(mesh_dir, site_name(0)).ssl_context() if mesh_dir else None
    t0 = time.perf_counter()
    first = await nats.connect(url, **_creds(tls, seeds, 0))
    await summaries.ensure_bucket(first, MESH, replicas=1)
    await first.close()
    sem = asyncio.Semaphore(50)

    async def one(i: int) -> None:
        async with sem:
            nc = await nats.connect(url, **_creds(tls, seeds, i))
            js = nc.jetstream()
            await js.publish(
                summaries.key_subject(MESH, site_name(i)), summaries.encode(synthetic(i))
            )
            await nc.close()

    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - t0


def _creds(tls: object, seeds: dict[str, Path], i: int) -> dict[str, object]:
    if tls is None:
        return {}
    return {
        "tls": tls,
        "nkeys_seed": str(seeds[site_name(i)]),
        "inbox_prefix": site_inbox(MESH, site_name(i)),
    }


async def keys_then_get(url: str, n: int) -> int:
    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value(summaries.bucket_name(MESH))
        for _ in range(3):  # nats-py's keys() now and then ends before the first key
            with contextlib.suppress(nats.js.errors.NoKeysError):
                keys = await kv.keys()
                break
        else:
            raise RuntimeError("keys() found no key three times")
        assert len(keys) == n, f"keys() found {len(keys)} of {n}"
        for k in keys:
            await kv.get(k)
        return len(keys)
    finally:
        await nc.close()


def timed(fn: object, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - t0)
    return out


def row(t: Table, what: str, times: list[float], note: str = "") -> None:
    t.add_row(
        what,
        f"{statistics.median(times) * 1000:.0f}",
        f"{max(times) * 1000:.0f}",
        str(len(times)),
        note,
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sites", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    n, runs = args.sites, args.runs
    servers: list[EmbeddedServer] = []
    with tempfile.TemporaryDirectory(prefix="bench-status-") as tmp:
        root = Path(tmp)
        try:
            mesh_dir, seeds = make_mesh(root, n)
            secure = start_server(root, mesh_dir)
            servers.append(secure)
            plain = start_server(root, None)
            servers.append(plain)
            wrote = asyncio.run(write_all(secure.client_url, n, mesh_dir, seeds))
            asyncio.run(write_all(plain.client_url, n, None, seeds))
            admin = root / "mesh" / "identities" / "admin"
            conn = MeshConnection([secure.client_url], "bench", identity=load_identity(admin))
            conn.start()
            try:
                conn.wait_connected(10)
                got = collect_summaries(conn, MESH, timeout=10)
                assert len(got) == n, f"read {len(got)} summaries of {n}"
                read = timed(lambda: collect_summaries(conn, MESH, timeout=10), runs)
            finally:
                conn.close()
            kg = timed(lambda: asyncio.run(keys_then_get(plain.client_url, n)), runs)
            cmd = [
                sys.executable,
                "-m",
                "harmony",
                "status",
                "--server",
                secure.client_url,
                "--mesh",
                MESH,
                "--identity",
                str(admin),
            ]
            outs: list[subprocess.CompletedProcess[str]] = []
            status = timed(
                lambda: outs.append(
                    subprocess.run(cmd, capture_output=True, text=True, timeout=60)
                ),
                runs,
            )
            for o in outs:  # exit 1 would mean a stale site: none is (interval 3600 s)
                assert o.returncode == 0, f"exit {o.returncode}: {o.stderr or o.stdout[-800:]}"
            assert f"{n} site(s)" in outs[-1].stdout, outs[-1].stdout
            help_cmd = [sys.executable, "-m", "harmony", "--help"]
            startup = timed(lambda: subprocess.run(help_cmd, capture_output=True, timeout=60), runs)
        finally:
            for s in servers:
                s.stop(grace=3)
    t = Table(title=f"harmony status at {n} sites (secure nats-server, one KV bucket)")
    for col in ("what", "median ms", "max ms", "runs", "note"):
        t.add_column(col)
    row(t, "write N summaries (N connections)", [wrote], "each site its own key, acked")
    row(t, "collect_summaries (ordered consumer)", read, "open operator connection, TLS")
    row(t, "keys() + get per key", kg, "plaintext server, new connection")
    row(t, "harmony status (subprocess)", status, "start-up + TLS + read + render")
    row(t, "python -m harmony --help", startup, "start-up alone")
    Console().print(t)
    print(outs[-1].stdout[-1500:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
