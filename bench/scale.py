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

`--cores 3` makes it a core-and-edge mesh (`LocalMesh(cores=3)`): the first 3 sites are
cores, the others edges (leaf nodes of every core), every agent hears only its interest
(the sites of its workloads' topologies and the cores). The first `--with-standby`
workloads of each site name the next site around the ring as their standby, so every site
is heard by its two neighbours (and hears them); health samples only the peers each site
listens to (`harmony.client.expected_peers`), servers are reported by role, and detection
is of a killed edge, as seen by the sites that listen to it. The cores start first, the
edges `--batch` at a time, each batch once the copies so far run and the machine is calm
(`--calm`):

    .venv/bin/python bench/scale.py --sizes 60 --cores 3

`--simulated N1,N2,...` measures instead a few real sites with N simulated peers around
them (bench/scale_sim.py, bench/scale_peers.py):

    .venv/bin/python bench/scale.py --simulated 10,100,300,1000
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from harmony import interrupts
from harmony.actors.journal import read_journal
from harmony.client import collect_snapshots, collect_summaries, expected_peers
from harmony.config import FailoverTopologyConfig, ProcessDriverConfig, Timings, WorkloadConfig
from harmony.mesh.connection import MeshConnection
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
    """Every server's, or with cores the core servers' (the edges' below)."""
    edge_cpu: list[float] = field(default_factory=list)
    edge_rss: list[float] = field(default_factory=list)
    core_agent_cpu: list[float] = field(default_factory=list)
    cores: int = 0
    detect: list[float] = field(default_factory=list)
    listeners: int = 0
    """Sites that listen to the killed one (every other one without cores)."""
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


MIN_AVAILABLE_MB = 3000
"""Give up on a size when the machine's available memory falls below this (`--min-available`;
every workload copy is a `sleep` and its keeper, a Python process of ~12 MB of its own)."""


class MemoryLow(Exception):
    pass


def guard() -> None:
    available = psutil.virtual_memory().available / 2**20
    if available < float(os.environ.get("SCALE_MIN_AVAILABLE_MB", MIN_AVAILABLE_MB)):
        raise MemoryLow(f"stopped: the machine has {available:.0f} MB of memory available")


def stop_mesh(mesh: LocalMesh) -> None:
    """Stop every process of the mesh, also when the machine is too loaded for `stop`'s
    own waits (it then raises before its sweep)."""
    try:
        mesh.stop()
    except Exception as e:
        print(f"stop: {type(e).__name__}: {e}; sweeping", flush=True)
        mesh.sweep()


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block is done (a cleanup is not cut short by a
    second signal); one that came meanwhile is delivered at its end."""
    came: list[int] = []
    stops = (signal.SIGINT, signal.SIGTERM)
    old = {sig: signal.signal(sig, lambda signum, _: came.append(signum)) for sig in stops}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if came:
        raise KeyboardInterrupt(f"signal {came[0]}")


def workloads_for(sites: list[str], per_site: int, with_standby: int = 0) -> list[WorkloadConfig]:
    """`per_site` workloads whose primary is each site; the first `with_standby` of them
    name the next site around the ring as standby (a site hears its topologies' sites)."""
    n = len(sites)
    return [
        WorkloadConfig(
            name=f"w{i:02d}-{s}",
            strategy="split-brain-allowed",
            driver=ProcessDriverConfig(command=["sleep", "infinity"], restart="never"),
            topology=FailoverTopologyConfig(
                primary=s, standbys=[sites[(k + 1) % n]] if i < with_standby and n > 1 else []
            ),
        )
        for k, s in enumerate(sites)
        for i in range(per_site)
    ]


def timings_text(heartbeat: float | None) -> str:
    """The timings the run used, as the report states them (read, not assumed)."""
    t = Timings(heartbeat_interval=heartbeat) if heartbeat else Timings()
    which = "default timings" if not heartbeat else "default timings but the heartbeat"
    return (
        f"{which} (heartbeat {t.heartbeat_interval:g} s, suspect after {t.suspect_after:g} "
        f"intervals, silent after {t.silent_after:g})"
    )


CALM_SAMPLE = 5.0
"""Seconds of machine CPU that `wait_calm` averages."""


def wait_calm(busy_max: float, deadline: float) -> str:
    """Wait until the machine's CPU, over `CALM_SAMPLE` s, is at most `busy_max` % busy (of
    all cores), or the deadline: the next batch's start-up burst then lands on agents that
    keep up with their heartbeats, not on a backlog. Says how long it waited."""
    t0 = time.monotonic()
    busy = psutil.cpu_percent(interval=CALM_SAMPLE)
    while busy > busy_max and time.monotonic() < deadline:
        busy = psutil.cpu_percent(interval=CALM_SAMPLE)
    waited = time.monotonic() - t0
    return f"calm ({busy:.0f} % busy) after {waited:.0f} s"


def start_mesh(
    mesh: LocalMesh, cores: int, batch: int, timeout: float, per_site: int, calm: float = 0.0
) -> None:
    """All at once (as always), or the cores first and then the edges `batch` at a time,
    each batch's copies all running (from the site summaries) before the next batch starts:
    spawning a thousand copies and their keepers at once on 2 cores starves the agents'
    start-up (an edge's join check timed out at load 816). With `calm` (a CPU %), a batch
    also waits until the machine is that calm. Then wait until formed."""
    if not cores:
        mesh.start(timeout=timeout)
        return
    mesh.write_configs()
    deadline = time.monotonic() + timeout
    names = list(mesh.sites)
    conn = None
    try:
        for k in range(cores, len(names) + batch, batch):
            group = names[:cores] if k == cores else names[k - batch : k]
            if not group:
                continue
            guard()
            t0 = time.monotonic()
            mesh.start(group, timeout=max(1.0, deadline - time.monotonic()), wait_formed=False)
            if conn is None:
                conn = mesh.connect("bench-scale-start")
                conn.wait_connected(max(1.0, deadline - time.monotonic()))
            started = names[: max(k, cores)]
            running = wait_running(conn, mesh.mesh, started, per_site, deadline)
            took = time.monotonic() - t0
            calmed = f", {wait_calm(calm, deadline)}" if calm else ""
            print(
                f"  started {group[0]}..{group[-1]}: {running}/{per_site * len(started)} copies "
                f"running after {took:.0f} s, load {os.getloadavg()[0]:.0f}{calmed}, "
                f"{silences(mesh)} peer-silent journaled",
                flush=True,
            )
    finally:
        if conn is not None:
            conn.close()
    mesh.wait_formed(max(1.0, deadline - time.monotonic()))


def wait_running(
    conn: MeshConnection, mesh: str, started: list[str], per_site: int, deadline: float
) -> int:
    """Copies running on the `started` sites, once they run `per_site` each in all (a copy
    may run on its standby: the ring's last edge's standby is a core, which started first),
    or at the deadline (the formation wait that follows then says what is missing)."""
    running = 0
    while time.monotonic() < deadline:
        guard()  # copies still starting take memory too
        try:
            found = collect_summaries(conn, mesh, timeout=2.0)
        except TimeoutError:  # the core is busy with the start-up: ask again
            continue
        running = sum(found[s].value.workloads.get("running", 0) for s in started if s in found)
        if running >= per_site * len(started):
            break
        time.sleep(1.0)  # summaries are written every few seconds
    return running


def measure(n: int, args: argparse.Namespace, root: Path) -> Sample:
    per_site, window, settle, cores = args.workloads, args.window, args.settle, args.cores
    sample = Sample(n, per_site, cores=cores)
    sites = [f"s{i:02d}" for i in range(n)]
    # the product defaults, or another heartbeat to compare false suspicions
    timings = Timings(heartbeat_interval=args.heartbeat) if args.heartbeat else Timings()
    mesh = LocalMesh(
        root / f"n{n}",
        mesh=f"scale{n}",
        sites=sites,
        workloads=workloads_for(sites, per_site, args.with_standby if cores else 0),
        timings=timings,
        log_level="warning",
        cores=cores,
        connect_timeout=args.timeout,  # the join checks of the last edges wait for the core
    )
    conn = None
    try:
        started = time.monotonic()
        try:
            start_mesh(mesh, cores, args.batch, args.timeout, per_site, args.calm)
        except LaunchError as e:
            said = [ln for ln in str(e).splitlines() if ln.strip()]
            sample.note = f"did not form: {' '.join(dict.fromkeys([said[0], said[-1]]))}"
            return sample
        except MemoryLow as e:
            started_n = sum(p.running for p in mesh.procs.values())
            sample.note = f"{e} with {started_n} of {n} agents started"
            return sample
        sample.formed_s = time.monotonic() - started
        conn = mesh.connect("bench-scale")
        conn.wait_connected(10)
        core_sites = set(mesh.core_sites()) if cores else set(sites)
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
                listens = expected_peers(snap, set(sites))
                heard = {p.site for p in snap.peers}
                sample.views += len(listens - heard)
                sample.bad_views += len(listens - heard)  # listened to, not in its table
                for p in snap.peers:
                    if p.site not in listens:
                        continue
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
        for s, pid in agents.items():
            cpu = 100 * (cpu_seconds(pid) - before[pid]) / elapsed
            sample.agent_cpu.append(cpu)
            sample.agent_rss.append(rss_mb(pid))
            if s in core_sites:
                sample.core_agent_cpu.append(cpu)
        for s, pids in servers.items():
            for pid in pids:
                cpu_of, rss_of = (
                    (sample.server_cpu, sample.server_rss)
                    if s in core_sites
                    else (sample.edge_cpu, sample.edge_rss)
                )
                cpu_of.append(100 * (cpu_seconds(pid) - before[pid]) / elapsed)
                rss_of.append(rss_mb(pid))
        sample.load = os.getloadavg()
        sample.healthy = sample.bad_views == 0 and sample.max_hb_age < limit
        victim = sites[-1]
        # Who listens to the victim: every other site, or (cores named) those whose peer
        # table holds it.
        watchers = [
            s
            for s in sites[:-1]
            if not cores or (s in final and victim in {p.site for p in final[s].peers})
        ]
        sample.listeners = len(watchers)
        killed_at = time.monotonic()
        mesh.kill(victim, signal.SIGKILL)
        deadline = killed_at + 10 * timings.heartbeat_interval * timings.silent_after + 10
        while time.monotonic() < deadline and len(sample.detect) < len(watchers):
            found = [detected(mesh, s, victim, killed_at) for s in watchers]
            sample.detect = [t for t in found if t is not None]
            time.sleep(0.5)
        return sample
    finally:
        with shielded():
            if conn is not None:
                conn.close()
            stop_mesh(mesh)


def silences(mesh: LocalMesh) -> int:
    """`peer-silent` events journaled so far across the started sites: a mesh that flaps
    shows it here first (a healthy start-up journals none)."""
    total = 0
    for cfg in mesh.configs.values():
        path = Path(cfg.data_dir) / "journal.jsonl"
        if path.exists():
            total += sum(1 for ev in read_journal(path) if ev.kind == "peer-silent")
    return total


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


def markdown(samples: list[Sample], command: str, args: argparse.Namespace) -> str:
    cores = args.cores
    shape = (
        f"{cores} core sites (clustered JetStream, routes among themselves) and the others "
        "edges (leaf nodes of every core), every agent hearing only the sites of its "
        f"workloads' topologies and the cores; {args.with_standby} workloads of each site "
        "name the next site around the ring as standby; *views* are each site's views of the peers "
        "it listens to; detection: the last site (an edge) killed, seen by its listeners"
        if cores
        else "full mesh of routes"
    )
    servers = (
        "core server CPU | core server RSS | edge server CPU | edge server RSS"
        if cores
        else "server CPU | server RSS"
    )
    lines = [
        "# Scale: how large a mesh this machine runs in real mode",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {os.cpu_count()} CPUs; {timings_text(args.heartbeat)}. Every site is a "
        "real agent process with its own "
        f"nats-server ({shape}) and {args.workloads} split-brain-allowed workloads, "
        "each a real `sleep` process (a supervisor and a driver actor each).",
        "",
        "| sites | workloads running | formed in | healthy | non-alive views | max hb age | "
        f"agent CPU | agent RSS | {servers} | detection (kill one site) | load 1/5/15 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if cores else ""),
    ]
    for s in samples:
        formed = f"{s.formed_s:.0f} s" if s.formed_s is not None else "no"
        edge = f" {_stats(s.edge_cpu, '%')} | {_stats(s.edge_rss, 'MB')} |" if cores else ""
        det = _stats(s.detect, "s") + (f", {len(s.detect)} of {s.listeners}" if cores else "")
        lines.append(
            f"| {s.sites} | {s.running}/{s.sites * s.workloads} | {formed} | "
            f"{'yes' if s.healthy else 'NO'} | "
            f"{s.bad_views}/{s.views} | {s.max_hb_age:.2f} s | {_stats(s.agent_cpu, '%')} | "
            f"{_stats(s.agent_rss, 'MB')} | {_stats(s.server_cpu, '%')} | "
            f"{_stats(s.server_rss, 'MB')} |{edge} {det} | "
            + "/".join(f"{x:.1f}" for x in s.load)
            + " |"
        )
    notes = [f"- {s.sites} sites: {s.note}" for s in samples if s.note]
    notes += [
        f"- {s.sites} sites: core agents' CPU {_stats(s.core_agent_cpu, '%')}"
        for s in samples
        if cores and s.core_agent_cpu
    ]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="5,10,20,30", help="comma-separated site counts")
    p.add_argument("--workloads", type=int, default=20, help="workloads per site")
    p.add_argument("--window", type=float, default=30.0, help="steady window, seconds")
    p.add_argument("--timeout", type=float, default=900.0, help="start-up timeout per size, s")
    p.add_argument("--settle", type=float, default=20.0, help="seconds after formation")
    p.add_argument("--keep-going", action="store_true", help="do not stop at a failed size")
    p.add_argument("--out", help="default: bench/results-scale.md (-sim.md: --simulated)")
    p.add_argument("--dir", help="work directory (default: temporary)")
    p.add_argument("--cores", type=int, default=0, help="core sites (0: all-core, as always)")
    p.add_argument(
        "--with-standby",
        type=int,
        default=2,
        help="with --cores: workloads with a standby, per site",
    )
    p.add_argument("--heartbeat", type=float, help="heartbeat_interval, s (default: the product's)")
    p.add_argument("--batch", type=int, default=5, help="with --cores: edges started at once")
    p.add_argument(
        "--calm",
        type=float,
        default=50.0,
        help="with --cores: a batch starts once the machine's CPU is at most this %% busy "
        f"over {CALM_SAMPLE:g} s (0: do not wait)",
    )
    sim = p.add_argument_group("simulated peers (bench/scale_sim.py)")
    sim.add_argument("--simulated", metavar="N1,N2", help="simulated peer counts to sweep")
    sim.add_argument("--real-extra", type=int, default=2, help="real sites besides 3 core")
    sim.add_argument(
        "--listen",
        choices=("all", "interest", "none"),
        help="heartbeats simulated peers subscribe to (default: interest with --cores, else all)",
    )
    sim.add_argument("--formation", type=float, default=150.0, help="formation deadline, s")
    sim.add_argument("--kills", type=int, default=3, help="kills of a real site per N")
    sim.add_argument(
        "--sim-standbys", type=int, default=2, help="simulated standbys of the real workloads"
    )
    sim.add_argument("--status-runs", type=int, default=3, help="`harmony status` runs per N")
    p.add_argument("--min-available", type=int, help=f"MB; default {MIN_AVAILABLE_MB}")
    args = p.parse_args()
    if args.min_available is not None:  # `guard` reads it, here and in scale_sim
        os.environ["SCALE_MIN_AVAILABLE_MB"] = str(args.min_available)
    interrupts.install()  # SIGTERM and Ctrl-C unwind through `measure`'s cleanup
    command = "python bench/scale.py " + shlex.join(sys.argv[1:])
    root = Path(args.dir or tempfile.mkdtemp(prefix="harmony-scale-"))
    if args.simulated:
        import scale_sim  # beside this file: sys.path[0]

        args.out = args.out or "bench/results-scale-sim.md"
        args.listen = args.listen or ("interest" if args.cores else "all")
        if args.cores not in (0, 3):
            p.error("--simulated runs 3 real cores: --cores 3 or none")
        return scale_sim.run(args, command, root)
    args.out = args.out or "bench/results-scale.md"
    samples: list[Sample] = []
    for n in [int(x) for x in args.sizes.split(",")]:
        print(f"--- {n} sites x {args.workloads} workloads", flush=True)
        try:
            s = measure(n, args, root)
        except KeyboardInterrupt:
            print("interrupted: every site stopped", flush=True)
            return 130
        samples.append(s)
        print(markdown([s], command, args).splitlines()[-1], flush=True)
        Path(args.out).write_text(markdown(samples, command, args))
        if (s.formed_s is None or not s.healthy) and not args.keep_going:
            print(f"stopping the sweep at {n} sites: not healthy", flush=True)
            break
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
