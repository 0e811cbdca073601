"""`bench/scale.py --simulated N1,N2,...`: N simulated peers around a few real sites.

For each N, on a fresh mesh: 3 real core sites (agent + embedded nats-server each, as
`LocalMesh` starts them, secure) and `--real-extra` more real sites, all with the product's
default timings. Without `--cores` every real site is a full JetStream server in one route
mesh and hears every heartbeat (all-core, the baseline). With `--cores 3` the mesh names
c1-c3 as its cores: the extra real sites are edges (leaf nodes of every core) and every
agent hears only its interest (its topologies' sites and the cores). The extra real sites
run `--workloads` split-brain-allowed workloads each (a real `sleep`) whose standbys are
two simulated sites (and, with cores, the next extra real site around their ring, so that
a killed one has real listeners). Then N simulated sites (bench/scale_peers.py, one
process) join: each its own identity (roster entry, nkey, certificate), its own client
connection to one of the 3 core servers, real heartbeats on its own subject at the default
interval, its summary every 5 s, and the subscriptions an agent of that mesh would hold
(`--listen interest`, the default with cores: the cores and its topology sites, where
simulated sites pair up: p0000 with p0001 and the extra real sites, p0002 with p0003...).

Per N: formation (the real mesh started -> every real site sees every site alive), health
of the real sites' views over a steady window, CPU (% of one core) and RSS of each real
agent and each core nats-server, the harness's own CPU, `harmony status` wall time, and
silent-peer detection (a real extra site SIGKILLed, agent and server, `--kills` times,
restarted in between; latency until each other real site that listens to it journals
`peer-silent`, on the machine-wide monotonic clock).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from scale import MemoryLow, cpu_seconds, detected, guard, rss_mb, shielded, stop_mesh
from scale_peers import PeersProcess, add_peers

from harmony.actors.messages import Snapshot
from harmony.client import collect_snapshot, expected_peers
from harmony.config import FailoverTopologyConfig, ProcessDriverConfig, Timings, WorkloadConfig
from harmony.mesh.connection import MeshConnection
from harmony.sim.launch import LaunchError, LocalMesh

CORE = ["c1", "c2", "c3"]


@dataclass
class SimSample:
    peers: int
    keys_s: float = 0.0
    formed_s: float | None = None
    peers_up_s: float = 0.0
    real_s: float = 0.0
    """Seconds for the real sites alone to form (before the simulated ones start)."""
    views: int = 0
    bad_views: int = 0
    max_hb_age: float = 0.0
    agent_cpu: dict[str, float] = field(default_factory=dict)
    agent_rss: dict[str, float] = field(default_factory=dict)
    server_cpu: dict[str, float] = field(default_factory=dict)
    server_rss: dict[str, float] = field(default_factory=dict)
    harness_cpu: float = 0.0
    harness_rss: float = 0.0
    harness: dict[str, object] = field(default_factory=dict)
    status_s: list[float] = field(default_factory=list)
    status_sites: int = 0
    detect: list[float] = field(default_factory=list)
    listeners: int = 0
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)
    note: str = ""


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (p99 of a few samples is their maximum)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def real_views(conn: MeshConnection, mesh: str, real: list[str]) -> dict[str, Snapshot]:
    """The real sites' snapshots, asked one by one (a request to every site would have a
    thousand simulated ones answer it)."""
    snaps = {s: collect_snapshot(conn, mesh, s, timeout=3.0) for s in real}
    return {s: snap for s, snap in snaps.items() if snap is not None}


def not_alive(snaps: dict[str, Snapshot], real: list[str], everyone: set[str]) -> int:
    """How many (real site, peer it listens to) pairs are not alive: 0 when formed."""
    return sum(
        len(
            expected_peers(snaps[s], everyone)
            - {p.site for p in snaps[s].peers if p.state == "alive"}
        )
        if s in snaps
        else len(everyone)
        for s in real
    )


def sees_all(conn: MeshConnection, mesh: str, real: list[str], everyone: set[str]) -> bool:
    return not_alive(real_views(conn, mesh, real), real, everyone) == 0


def interest_of(sims: list[str], extra: list[str], shared: int = 2) -> dict[str, list[str]]:
    """The sites each simulated site hears with interest scoping, besides the cores: its
    topologies' (the first `shared` share the extra real sites'; the others pair up)."""
    hears = {p: [*extra, *(q for q in sims[:shared] if q != p)] for p in sims[:shared]}
    for i in range(shared, len(sims)):
        partner = i ^ 1
        hears[sims[i]] = [sims[partner]] if shared <= partner < len(sims) else []
    return {p: [*CORE, *h] for p, h in hears.items()}


def status_time(mesh: LocalMesh, site: str) -> tuple[float, int]:
    """Wall time of `harmony status --json` (a new process, as an operator runs it) and
    how many sites answered."""
    import json

    cmd = [mesh.python, "-m", "harmony", "status", "--config", str(mesh.procs[site].config_path)]
    t0 = time.monotonic()
    out = subprocess.run(
        [*cmd, "--json", "--timeout", "10"], capture_output=True, timeout=60, check=False
    )
    took = time.monotonic() - t0
    try:
        return took, len(json.loads(out.stdout))
    except ValueError:
        kept = mesh.workdir / f"status-{time.time_ns()}.out"
        kept.write_bytes(out.stdout + b"\n--- stderr\n" + out.stderr)
        print(f"status exited {out.returncode}, output not JSON: see {kept}", flush=True)
        return took, 0


def measure(n: int, args: argparse.Namespace, root: Path) -> SimSample:
    sample = SimSample(n)
    extra = [f"r{i + 1}" for i in range(args.real_extra)]
    real = [*CORE, *extra]
    sims = [f"p{i:04d}" for i in range(n)]
    ring = [
        [extra[(k + 1) % len(extra)]] if args.cores and len(extra) > 1 else []
        for k in range(len(extra))
    ]
    workloads = [
        WorkloadConfig(
            name=f"w{i:02d}-{r}",
            strategy="split-brain-allowed",
            driver=ProcessDriverConfig(command=["sleep", "infinity"], restart="never"),
            topology=FailoverTopologyConfig(
                primary=r, standbys=[*ring[k], *sims[: args.sim_standbys]]
            ),
        )
        for k, r in enumerate(extra)
        for i in range(args.workloads)
    ]
    timings = Timings()
    mesh = LocalMesh(
        root / f"sim{n}",
        mesh=f"simscale{n}",
        sites=real,
        workloads=workloads,
        timings=timings,
        log_level="warning",
        cores=len(CORE) if args.cores else 0,
    )
    peers: PeersProcess | None = None
    conn = None
    try:
        t_keys = time.monotonic()
        mesh.write_configs()
        add_peers(mesh.mesh_dir, sims)  # in the roster before the servers start
        sample.keys_s = time.monotonic() - t_keys
        started = time.monotonic()
        try:
            mesh.start(timeout=args.timeout)
        except LaunchError as e:
            sample.note = f"real sites did not form: {str(e).splitlines()[0]}"
            return sample
        sample.real_s = time.monotonic() - started
        peers = PeersProcess.start(
            mesh.workdir / "peers",
            mesh.mesh_dir,
            mesh.mesh,
            mesh.client_urls(CORE),
            sims,
            hears=interest_of(sims, extra, args.sim_standbys),
            listen=args.listen,
            known=real,
            timeout=args.timeout,
        )
        t_peers = time.monotonic()
        peers.wait_ready(args.timeout)
        sample.peers_up_s = time.monotonic() - t_peers
        conn = mesh.connect("bench-scale", CORE)
        conn.wait_connected(10)
        everyone = {*real, *sims}
        deadline = started + args.formation
        best = len(real) * len(everyone)
        while (missing := not_alive(real_views(conn, mesh.mesh, real), real, everyone)) > 0:
            guard()
            best = min(best, missing)
            if time.monotonic() > deadline:
                # Measure anyway: what it costs, and how detection fares, when it does not.
                sample.note = (
                    f"never formed within {args.formation:g} s: at best {best} of the real "
                    "sites' views of the peers they listen to were not alive at once"
                )
                break
            time.sleep(0.5)
        else:
            sample.formed_s = time.monotonic() - started
        time.sleep(args.settle)  # the start-up burst (workloads spawning) passes

        agents = {s: p.proc.pid for s, p in mesh.procs.items() if p.proc is not None}
        servers = {s: mesh.server_pids(s)[0] for s in CORE if mesh.server_pids(s)}
        pids = [*agents.values(), *servers.values(), peers.pid]
        before = {pid: cpu_seconds(pid) for pid in pids}
        t0 = time.monotonic()
        limit = timings.suspect_after * timings.heartbeat_interval
        while time.monotonic() - t0 < args.window:
            guard()
            snaps = real_views(conn, mesh.mesh, real)
            for s in real:
                if s not in snaps:
                    sample.bad_views += 1
                    continue
                listens = expected_peers(snaps[s], everyone)
                unheard = listens - {p.site for p in snaps[s].peers}
                sample.views += len(unheard)
                sample.bad_views += len(unheard)
                for p in snaps[s].peers:
                    if p.site not in listens:
                        continue
                    sample.views += 1
                    sample.max_hb_age = max(sample.max_hb_age, p.last_heartbeat_age or 0.0)
                    if p.state != "alive":
                        sample.bad_views += 1
            time.sleep(1.0)
        elapsed = time.monotonic() - t0
        for s, pid in agents.items():
            sample.agent_cpu[s] = 100 * (cpu_seconds(pid) - before[pid]) / elapsed
            sample.agent_rss[s] = rss_mb(pid)
        for s, pid in servers.items():
            sample.server_cpu[s] = 100 * (cpu_seconds(pid) - before[pid]) / elapsed
            sample.server_rss[s] = rss_mb(pid)
        sample.harness_cpu = 100 * (cpu_seconds(peers.pid) - before[peers.pid]) / elapsed
        sample.harness_rss = rss_mb(peers.pid)
        sample.harness = peers.stats()
        sample.load = os.getloadavg()
        if sample.max_hb_age >= limit:
            sample.note += f" heartbeats up to {sample.max_hb_age:.2f} s old (suspect at {limit})"

        for _ in range(args.status_runs):
            took, answered = status_time(mesh, CORE[0])
            sample.status_s.append(took)
            sample.status_sites = answered

        victim = extra[-1] if extra else CORE[-1]
        final = real_views(conn, mesh.mesh, real)
        watchers = [
            s
            for s in real
            if s != victim and s in final and victim in expected_peers(final[s], everyone)
        ]
        sample.listeners = len(watchers)
        for k in range(args.kills):
            killed_at = time.monotonic()
            mesh.kill(victim, signal.SIGKILL)
            until = killed_at + 10 * timings.heartbeat_interval * timings.silent_after + 10
            found: list[float | None] = []
            while time.monotonic() < until:
                found = [detected(mesh, s, victim, killed_at) for s in watchers]
                if all(t is not None for t in found):
                    break
                time.sleep(0.2)
            sample.detect += [t for t in found if t is not None]
            if k + 1 < args.kills:
                mesh.start([victim], timeout=args.timeout, wait_formed=False)
                while not sees_all(conn, mesh.mesh, watchers, {victim}):
                    if time.monotonic() > killed_at + args.timeout:
                        sample.note += f" {victim} not seen alive again after kill {k + 1}"
                        return sample
                    time.sleep(0.5)
        return sample
    except (MemoryLow, RuntimeError) as e:
        sample.note += f" {e}".splitlines()[0]
        return sample
    finally:
        with shielded():
            if peers is not None:
                peers.stop()
            if conn is not None:
                conn.close()
            stop_mesh(mesh)


def _med(values: list[float] | dict[str, float], unit: str) -> str:
    vals = list(values.values()) if isinstance(values, dict) else values
    if not vals:
        return "—"
    mid = sorted(vals)[len(vals) // 2]
    return f"{mid:.1f} {unit} ({min(vals):.1f}-{max(vals):.1f})"


def targets(samples: list[SimSample]) -> list[str]:
    """Issue 11's targets, from the smallest and the largest N measured."""
    done = [s for s in samples if s.agent_cpu]
    if len(done) < 2:
        return []
    lo, hi = done[0], done[-1]
    ratios = {k: hi.agent_cpu[k] / lo.agent_cpu[k] for k in hi.agent_cpu if lo.agent_cpu.get(k)}
    worst = max(ratios, key=lambda k: ratios[k]) if ratios else "—"
    p99 = quantile(hi.detect, 0.99) if hi.detect else float("inf")
    server = max(hi.server_cpu.values(), default=float("inf"))
    yes = {True: "met", False: "NOT met"}
    return [
        f"- target, real agent CPU at {hi.peers} within 1.5x of {lo.peers}: "
        f"{yes[bool(ratios) and ratios[worst] <= 1.5]} (worst {worst}: "
        f"{lo.agent_cpu.get(worst, 0):.1f} -> {hi.agent_cpu.get(worst, 0):.1f} %, "
        f"{ratios.get(worst, 0):.2f}x)",
        f"- target, detection p99 < 1.5 s at {hi.peers}: {yes[p99 < 1.5]} ({p99:.2f} s, "
        f"{len(hi.detect)} samples)",
        f"- target, core servers < 50 % of a core at {hi.peers}: {yes[server < 50]} "
        f"(max {server:.1f} %)",
    ]


def markdown(samples: list[SimSample], command: str, args: argparse.Namespace) -> str:
    design = (
        "core and edge, interest-scoped (every agent hears its topologies' sites and the cores)"
        if args.cores
        else "all-core (every agent hears every heartbeat)"
    )
    real = (
        f"3 core ({', '.join(CORE)}) + {args.real_extra} edges (leaf nodes of every core)"
        if args.cores
        else f"3 core ({', '.join(CORE)}) + {args.real_extra} more, all in one route mesh"
    )
    lines = [
        f"# Scale, simulated peers: {design}",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {os.cpu_count()} CPUs; default timings. Real sites: {real}, each an agent "
        "with its own nats-server, secure (TLS + nkeys); the extra ones run "
        f"{args.workloads} split-brain-allowed workloads each, standbys {args.sim_standbys} "
        "simulated sites"
        f"{' and the next extra real site' if args.cores else ''}. Simulated sites: one "
        "process, one client connection each to a core server, heartbeats every "
        f"{Timings().heartbeat_interval} s, a summary every 5 s, subscriptions of an agent "
        f"(heartbeats: {args.listen}). Detection: n = samples (listeners x kills).",
        "",
        "| simulated | formed in | non-alive views | max hb age | agent CPU | agent RSS | "
        "core server CPU | core server RSS | detection p50 / p99 (n) | status | "
        "harness CPU / RSS | harness drops | load 1/5/15 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in samples:
        formed = f"{s.formed_s:.0f} s" if s.formed_s is not None else "no"
        det = (
            f"{quantile(s.detect, 0.5):.2f} / {quantile(s.detect, 0.99):.2f} s "
            f"({len(s.detect)} of {s.listeners} x {args.kills})"
            if s.detect
            else "—"
        )
        status = (
            f"{sorted(s.status_s)[len(s.status_s) // 2]:.2f} s ({s.status_sites} sites)"
            if s.status_s
            else "—"
        )
        drops = f"{s.harness.get('slow_consumer', 0)} slow, {s.harness.get('disconnects', 0)} disc."
        load = "/".join(f"{x:.1f}" for x in s.load)
        lines.append(
            f"| {s.peers} | {formed} | {s.bad_views}/{s.views} | {s.max_hb_age:.2f} s | "
            f"{_med(s.agent_cpu, '%')} | {_med(s.agent_rss, 'MB')} | "
            f"{_med(s.server_cpu, '%')} | {_med(s.server_rss, 'MB')} | {det} | {status} | "
            f"{s.harness_cpu:.0f} % / {s.harness_rss:.0f} MB | {drops} | {load} |"
        )
    lines.append("")
    for s in samples:
        per_site = ", ".join(f"{k} {v:.1f}" for k, v in s.agent_cpu.items())
        sent = s.harness.get("hb_sent", 0)
        lines.append(
            f"- {s.peers} simulated: keys {s.keys_s:.0f} s, real sites formed in {s.real_s:.0f} "
            f"s, then the simulated ones connected in "
            f"{s.peers_up_s:.0f} s; agent CPU % by site: {per_site or '—'}; harness sent "
            f"{sent} heartbeats, received {s.harness.get('hb_received', 0)}. {s.note}".rstrip()
        )
    lines += targets(samples)
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, command: str, root: Path) -> int:
    samples: list[SimSample] = []
    out = Path(args.out)
    for n in [int(x) for x in args.simulated.split(",")]:
        print(f"--- {n} simulated peers", flush=True)
        try:
            s = measure(n, args, root)
        except KeyboardInterrupt:
            print("interrupted: every site and peer stopped", flush=True)
            return 130
        samples.append(s)
        text = markdown(samples, command, args)
        print(markdown([s], command, args), flush=True)
        out.write_text(text)
        if s.formed_s is None and not args.keep_going:
            print(f"stopping the sweep at {n}: {s.note}", flush=True)
            break
    print(f"results: {out}", file=sys.stderr)
    return 0
