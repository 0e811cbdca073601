"""`bench/scale.py --simulated N1,N2,...`: today's design with N simulated peers around a
few real sites.

For each N, on a fresh mesh: 3 real core sites (agent + embedded nats-server each, as
`LocalMesh` starts them, secure) and `--real-extra` more real sites (today every site is a
full JetStream server in the route mesh: there is no edge yet), all with the product's
default timings. The extra real sites run `--workloads` split-brain-allowed workloads each
(a real `sleep`), whose topologies name two simulated sites as standbys. Then N simulated
sites (bench/scale_peers.py, one process) join: each its own identity (roster entry, nkey,
certificate), its own connection to one of the 3 core servers, real heartbeats on its own
subject at the default interval, and an agent's subscriptions.

Per N: formation (the real mesh started -> every real site sees every site alive), health
of the real sites' views over a steady window, CPU (% of one core) and RSS of each real
agent and each core nats-server, the harness's own CPU, `harmony status` wall time, and
silent-peer detection (a real extra site SIGKILLed, agent and server, `--kills` times,
restarted in between; latency until each other real site journals `peer-silent`, on the
machine-wide monotonic clock).
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

import psutil
from scale import cpu_seconds, detected, rss_mb
from scale_peers import PeersProcess, add_peers

from harmony.client import collect_snapshots
from harmony.config import FailoverTopologyConfig, ProcessDriverConfig, Timings, WorkloadConfig
from harmony.mesh.connection import MeshConnection
from harmony.sim.launch import LaunchError, LocalMesh

CORE = ["c1", "c2", "c3"]
MIN_AVAILABLE_MB = 3000
"""Give up on a size when the machine's free memory falls below this (servers buffering
for slow consumers can take it all; the machine is shared)."""


class MemoryLow(Exception):
    pass


def guard() -> None:
    available = psutil.virtual_memory().available / 2**20
    if available < MIN_AVAILABLE_MB:
        raise MemoryLow(f"stopped: the machine has {available:.0f} MB available")


@dataclass
class SimSample:
    peers: int
    keys_s: float = 0.0
    formed_s: float | None = None
    peers_up_s: float = 0.0
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
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)
    note: str = ""


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (p99 of a few samples is their maximum)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def alive_seen(conn: MeshConnection, mesh: str, real: list[str], everyone: set[str]) -> int:
    """The fewest of `everyone` (itself counted) that one of the `real` sites sees alive."""
    snaps = collect_snapshots(conn, mesh, timeout=5.0)
    return min(
        len(({p.site for p in snaps[s].peers if p.state == "alive"} | {s}) & everyone)
        if s in snaps
        else 0
        for s in real
    )


def sees_all(conn: MeshConnection, mesh: str, real: list[str], everyone: set[str]) -> bool:
    return alive_seen(conn, mesh, real, everyone) >= len(everyone)


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
    standbys = sims[:2]
    workloads = [
        WorkloadConfig(
            name=f"w{i:02d}-{r}",
            strategy="split-brain-allowed",
            driver=ProcessDriverConfig(command=["sleep", "infinity"], restart="never"),
            topology=FailoverTopologyConfig(primary=r, standbys=standbys),
        )
        for r in extra
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
        peers = PeersProcess.start(
            mesh.workdir / "peers",
            mesh.mesh_dir,
            mesh.mesh,
            mesh.client_urls(CORE),
            sims,
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
        best = 0
        while (seen := alive_seen(conn, mesh.mesh, real, everyone)) < len(everyone):
            guard()
            best = max(best, seen)
            if time.monotonic() > deadline:
                # Measure anyway: what it costs, and how detection fares, when it does not.
                sample.note = (
                    f"never formed within {args.formation:g} s: at best every real site saw "
                    f"{best} of the {len(everyone)} sites alive at once"
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
            snaps = collect_snapshots(conn, mesh.mesh, timeout=3.0)
            for s in real:
                if s not in snaps:
                    sample.bad_views += 1
                    continue
                for p in snaps[s].peers:
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
        watchers = [s for s in real if s != victim]
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
        if peers is not None:
            peers.stop()
        if conn is not None:
            conn.close()
        mesh.stop()


def _med(values: list[float] | dict[str, float], unit: str) -> str:
    vals = list(values.values()) if isinstance(values, dict) else values
    if not vals:
        return "—"
    mid = sorted(vals)[len(vals) // 2]
    return f"{mid:.1f} {unit} ({min(vals):.1f}-{max(vals):.1f})"


def markdown(samples: list[SimSample], command: str, args: argparse.Namespace) -> str:
    lines = [
        "# Scale, simulated peers: today's design (every agent hears every heartbeat)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {os.cpu_count()} CPUs; default timings. Real sites: 3 core "
        f"({', '.join(CORE)}) + {args.real_extra} more, each an agent with its own "
        "nats-server (today all in one route mesh), secure (TLS + nkeys); the extra ones run "
        f"{args.workloads} split-brain-allowed workloads each, standbys two simulated sites. "
        f"Simulated sites: one process, one connection each to a core server, heartbeats "
        f"every {Timings().heartbeat_interval} s, subscriptions of an agent "
        f"(heartbeats: {args.listen}).",
        "",
        "| simulated | formed in | non-alive views | max hb age | agent CPU | agent RSS | "
        "core server CPU | core server RSS | detection p50 / p99 (n) | status | "
        "harness CPU / RSS | harness drops | load 1m |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in samples:
        formed = f"{s.formed_s:.0f} s" if s.formed_s is not None else "no"
        det = (
            f"{quantile(s.detect, 0.5):.2f} / {quantile(s.detect, 0.99):.2f} s ({len(s.detect)})"
            if s.detect
            else "—"
        )
        status = (
            f"{sorted(s.status_s)[len(s.status_s) // 2]:.2f} s ({s.status_sites} sites)"
            if s.status_s
            else "—"
        )
        drops = f"{s.harness.get('slow_consumer', 0)} slow, {s.harness.get('disconnects', 0)} disc."
        lines.append(
            f"| {s.peers} | {formed} | {s.bad_views}/{s.views} | {s.max_hb_age:.2f} s | "
            f"{_med(s.agent_cpu, '%')} | {_med(s.agent_rss, 'MB')} | "
            f"{_med(s.server_cpu, '%')} | {_med(s.server_rss, 'MB')} | {det} | {status} | "
            f"{s.harness_cpu:.0f} % / {s.harness_rss:.0f} MB | {drops} | {s.load[0]:.1f} |"
        )
    lines.append("")
    for s in samples:
        per_site = ", ".join(f"{k} {v:.1f}" for k, v in s.agent_cpu.items())
        lines.append(
            f"- {s.peers} simulated: keys {s.keys_s:.0f} s, peers connected in "
            f"{s.peers_up_s:.0f} s; agent CPU % by site: {per_site or '—'}. {s.note}".rstrip()
        )
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
