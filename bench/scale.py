"""How large a mesh this machine runs in real mode with healthy heartbeats.

For each size N (sites), start N real sites (agent process + embedded nats-server each,
full mesh of routes) with W split-brain-allowed workloads per site (each a real `sleep`
process, so W workload supervisors + W driver actors per agent), with the product's default
timings. Then:

* formation: seconds until every site sees every other one alive;
* health: after `--settle` seconds (the start-up burst), over a steady window, every
  site's view of every peer is sampled once a second;
  healthy means no peer was ever seen suspect or silent and the oldest heartbeat age
  stayed under `suspect_after` intervals;
* cost: CPU (% of one core, over the window) and RSS of each agent and each nats-server;
* detection: one site is SIGKILLed (agent and server); the latency until each other site
  journals it silent (`peer-silent`), on the machine-wide monotonic clock.

The sweep stops at the first size that does not form or is not healthy. Results go to a
Markdown file with the exact command.

    .venv/bin/python bench/scale.py --sizes 5,10,20,30 --workloads 20

`--simulated N1,N2,...` measures instead a few real sites with N simulated peers around
them (bench/scale_sim.py, bench/scale_peers.py):

    .venv/bin/python bench/scale.py --simulated 10,100,300,1000
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from harmony import interrupts
from harmony.actors.journal import read_journal
from harmony.client import collect_snapshots
from harmony.config import FailoverTopologyConfig, ProcessDriverConfig, Timings, WorkloadConfig
from harmony.sim.launch import LaunchError, LocalMesh


@dataclass
class Sample:
    sites: int
    workloads: int
    formed_s: float | None = None
    healthy: bool = False
    bad_views: int = 0
    views: int = 0
    max_hb_age: float = 0.0
    agent_cpu: list[float] = field(default_factory=list)
    agent_rss: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    server_rss: list[float] = field(default_factory=list)
    detect: list[float] = field(default_factory=list)
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)
    running: int = 0
    """Workload copies whose driver reported running at the end of the window."""
    note: str = ""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` so far (0 when it is gone)."""
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return t.user + t.system


def rss_mb(pid: int) -> float:
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.Error:
        return 0.0


def workloads_for(sites: list[str], per_site: int) -> list[WorkloadConfig]:
    return [
        WorkloadConfig(
            name=f"w{i:02d}-{s}",
            strategy="split-brain-allowed",
            driver=ProcessDriverConfig(command=["sleep", "infinity"], restart="never"),
            topology=FailoverTopologyConfig(primary=s, standbys=[]),
        )
        for s in sites
        for i in range(per_site)
    ]


def measure(
    n: int, per_site: int, window: float, root: Path, timeout: float, settle: float
) -> Sample:
    sample = Sample(n, per_site)
    sites = [f"s{i:02d}" for i in range(n)]
    timings = Timings()  # the product defaults
    mesh = LocalMesh(
        root / f"n{n}",
        mesh=f"scale{n}",
        sites=sites,
        workloads=workloads_for(sites, per_site),
        timings=timings,
        log_level="warning",
    )
    conn = None
    try:
        started = time.monotonic()
        try:
            mesh.start(timeout=timeout)
        except LaunchError as e:
            sample.note = f"did not form: {str(e).splitlines()[0]}"
            return sample
        sample.formed_s = time.monotonic() - started
        conn = mesh.connect("bench-scale")
        conn.wait_connected(10)
        time.sleep(settle)  # let the start-up burst (spawning every workload) pass
        agents = {s: p.proc.pid for s, p in mesh.procs.items() if p.proc is not None}
        servers = {s: mesh.server_pids(s) for s in sites}
        server_pids = [pid for pids in servers.values() for pid in pids]
        before = {pid: cpu_seconds(pid) for pid in [*agents.values(), *server_pids]}
        t0 = time.monotonic()
        limit = timings.suspect_after * timings.heartbeat_interval
        while time.monotonic() - t0 < window:
            snaps = collect_snapshots(conn, mesh.mesh, timeout=2.0)
            for s in sites:
                snap = snaps.get(s)
                if snap is None:
                    sample.bad_views += 1
                    continue
                for p in snap.peers:
                    sample.views += 1
                    age = p.last_heartbeat_age or 0.0
                    sample.max_hb_age = max(sample.max_hb_age, age)
                    if p.state != "alive":
                        sample.bad_views += 1
            time.sleep(1.0)
        elapsed = time.monotonic() - t0
        final = collect_snapshots(conn, mesh.mesh, timeout=3.0)
        sample.running = sum(
            1
            for snap in final.values()
            for a in snap.actors
            if a.path.startswith("agent/workload/")
            and a.path.endswith("/run")
            and a.state == "running"
        )
        for pid in agents.values():
            sample.agent_cpu.append(100 * (cpu_seconds(pid) - before[pid]) / elapsed)
            sample.agent_rss.append(rss_mb(pid))
        for pids in servers.values():
            for pid in pids:
                sample.server_cpu.append(100 * (cpu_seconds(pid) - before[pid]) / elapsed)
                sample.server_rss.append(rss_mb(pid))
        sample.load = os.getloadavg()
        sample.healthy = sample.bad_views == 0 and sample.max_hb_age < limit
        victim = sites[-1]
        killed_at = time.monotonic()
        mesh.kill(victim, signal.SIGKILL)
        deadline = killed_at + 10 * timings.heartbeat_interval * timings.silent_after + 10
        while time.monotonic() < deadline and len(sample.detect) < n - 1:
            found = [detected(mesh, s, victim, killed_at) for s in sites[:-1]]
            sample.detect = [t for t in found if t is not None]
            time.sleep(0.5)
        return sample
    finally:
        if conn is not None:
            conn.close()
        mesh.stop()


def detected(mesh: LocalMesh, site: str, victim: str, since: float) -> float | None:
    """Seconds from `since` until `site` journaled `victim` silent, or None."""
    path = Path(mesh.configs[site].data_dir) / "journal.jsonl"
    events = read_journal(path) if path.exists() else []
    for ev in events:
        if ev.kind == "peer-silent" and ev.detail.get("site_of") == victim and ev.mono >= since:
            return ev.mono - since
    return None


def _stats(values: list[float], unit: str) -> str:
    if not values:
        return "—"
    return f"{statistics.median(values):.1f} {unit} (min {min(values):.1f}, max {max(values):.1f})"


def markdown(samples: list[Sample], command: str, per_site: int) -> str:
    lines = [
        "# Scale: how large a mesh this machine runs in real mode",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {os.cpu_count()} CPUs; default timings (heartbeat 0.5 s, suspect after "
        "1.5 intervals, silent after 2.5). Every site is a real agent process with its own "
        f"nats-server (full mesh of routes) and {per_site} split-brain-allowed workloads, "
        "each a real `sleep` process (a supervisor and a driver actor each).",
        "",
        "| sites | workloads running | formed in | healthy | non-alive views | max hb age | "
        "agent CPU | agent RSS | server CPU | server RSS | detection (kill one site) | load 1m |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in samples:
        formed = f"{s.formed_s:.0f} s" if s.formed_s is not None else "no"
        lines.append(
            f"| {s.sites} | {s.running}/{s.sites * s.workloads} | {formed} | "
            f"{'yes' if s.healthy else 'NO'} | "
            f"{s.bad_views}/{s.views} | {s.max_hb_age:.2f} s | {_stats(s.agent_cpu, '%')} | "
            f"{_stats(s.agent_rss, 'MB')} | {_stats(s.server_cpu, '%')} | "
            f"{_stats(s.server_rss, 'MB')} | {_stats(s.detect, 's')} | {s.load[0]:.1f} |"
        )
    notes = [f"- {s.sites} sites: {s.note}" for s in samples if s.note]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="5,10,20,30", help="comma-separated site counts")
    p.add_argument("--workloads", type=int, default=20, help="workloads per site")
    p.add_argument("--window", type=float, default=30.0, help="steady window, seconds")
    p.add_argument("--timeout", type=float, default=300.0, help="start-up timeout per size")
    p.add_argument("--settle", type=float, default=20.0, help="seconds after formation")
    p.add_argument("--keep-going", action="store_true", help="do not stop at a failed size")
    p.add_argument("--out", help="default: bench/results-scale.md (-sim.md: --simulated)")
    p.add_argument("--dir", help="work directory (default: temporary)")
    sim = p.add_argument_group("simulated peers (bench/scale_sim.py)")
    sim.add_argument("--simulated", metavar="N1,N2", help="simulated peer counts to sweep")
    sim.add_argument("--real-extra", type=int, default=2, help="real sites besides 3 core")
    sim.add_argument(
        "--listen",
        choices=("all", "none"),
        default="all",
        help="whether simulated peers subscribe to every heartbeat (as today)",
    )
    sim.add_argument("--formation", type=float, default=150.0, help="formation deadline, s")
    sim.add_argument("--kills", type=int, default=3, help="kills of a real site per N")
    sim.add_argument("--status-runs", type=int, default=3, help="`harmony status` runs per N")
    args = p.parse_args()
    interrupts.install()  # SIGTERM and Ctrl-C unwind through `measure`'s cleanup
    command = "python bench/scale.py " + shlex.join(sys.argv[1:])
    root = Path(args.dir or tempfile.mkdtemp(prefix="harmony-scale-"))
    if args.simulated:
        import scale_sim  # beside this file: sys.path[0]

        args.out = args.out or "bench/results-scale-sim.md"
        return scale_sim.run(args, command, root)
    args.out = args.out or "bench/results-scale.md"
    samples: list[Sample] = []
    for n in [int(x) for x in args.sizes.split(",")]:
        print(f"--- {n} sites x {args.workloads} workloads", flush=True)
        try:
            s = measure(n, args.workloads, args.window, root, args.timeout, args.settle)
        except KeyboardInterrupt:
            print("interrupted: every site stopped", flush=True)
            return 130
        samples.append(s)
        print(markdown([s], command, args.workloads).splitlines()[-1], flush=True)
        Path(args.out).write_text(markdown(samples, command, args.workloads))
        if (s.formed_s is None or not s.healthy) and not args.keep_going:
            print(f"stopping the sweep at {n} sites: not healthy", flush=True)
            break
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
