"""Does a healthy holder fence when another site dies? Counted from the sites' journals.

    python bench/spurious_fences.py [--runs 24] [--json out.json]

One mesh of 3 real sites (agents with embedded nats-servers, default timings) runs three
absolute-consistency workloads, one held by each site at first (`w-a` by a, ...). Each run
kills one site (SIGKILL agent and nats-server): alternately, when there is one, a site whose
server leads the lease stream of a workload held *elsewhere* (found through the monitoring
endpoint, `/jsz`), and any other site. The holders on the other sites are healthy: nothing
happened to their sites. The run counts their fences (journal `fence` of a workload whose
holder was not the killed site) and their failed renewals, measures how long the streams the
victim led had no leader, then restarts the killed site and waits until each workload runs
exactly once again.

A healthy holder fences when the lease stream is between leaders for longer than its fence
deadline (`lease_ttl - fence_margin` after its last renewal): issue 13, item 5.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harmony import procfs
from harmony.client import collect_snapshots, wait_formed
from harmony.config import FailoverTopologyConfig, ProcessDriverConfig, Timings, WorkloadConfig
from harmony.mesh.connection import MeshConnection
from harmony.mesh.subjects import lease_stream
from harmony.sim.history import load_history
from harmony.sim.launch import LocalMesh, pids_with_env
from harmony.sim.streams import StreamPlacement, stream_placement

SITES = ("a", "b", "c")
MESH = "sf"
OBSERVE = 20.0
"""Seconds after the kill in which a healthy holder's fence counts: more than the longest
election (9 s) plus a fence deadline (5.5 s)."""


LED = {True: "led another holder's stream", False: "led no other holder's stream"}
WORKLOADS = tuple(f"w-{s}" for s in SITES)


def workloads() -> list[WorkloadConfig]:
    out = []
    for i, site in enumerate(SITES):
        others = [SITES[(i + 1) % 3], SITES[(i + 2) % 3]]
        out.append(
            WorkloadConfig(
                name=f"w-{site}",
                strategy="absolute-consistency",
                topology=FailoverTopologyConfig(primary=site, standbys=others),
                driver=ProcessDriverConfig(command=["sleep", "100000"], restart="never"),
            )
        )
    return out


@dataclass
class Run:
    victim: str
    victim_led_stream: bool
    """The victim led the lease stream of a workload held on another site."""
    healthy_fences: int
    healthy_renew_failures: int
    leaderless_s: float
    healthy_copies_lost: int = 0
    """Ground truth: healthy holders' copies (their pid and start time, from the process
    table before the kill) that were gone at the end of the observation window."""


def copy_of(workload: str, site: str) -> tuple[int, int] | None:
    """The pid and start time of the `sleep` that is `workload`'s copy on `site`, from the
    process table (its environment names both), not from any agent."""
    for pid in pids_with_env(f"HARMONY_WORKLOAD={workload}"):
        env = procfs.environ(pid, ("HARMONY_SITE",))
        stat = procfs.stat(pid)
        if (
            env.get("HARMONY_SITE") == site
            and stat is not None
            and procfs.cmdline(pid).startswith("sleep")
        ):
            return pid, stat.start
    return None


def still_runs(copy: tuple[int, int]) -> bool:
    stat = procfs.stat(copy[0])
    return stat is not None and stat.start == copy[1] and stat.alive


class Bench:
    def __init__(self, workdir: Path, console: Console) -> None:
        self.console = console
        self.mesh = LocalMesh(
            workdir,
            mesh=MESH,
            sites=SITES,
            timings=Timings(),
            workloads=workloads(),
            log_level="warning",
        )
        self.conn: MeshConnection | None = None

    def start(self) -> None:
        self.mesh.start(timeout=120)
        self.conn = self.mesh.connect("bench-fences")
        self.conn.wait_connected(10)

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.mesh.stop()

    def holders(self) -> dict[str, str]:
        """workload -> the one site running it (workloads running twice or nowhere left out)."""
        assert self.conn is not None
        runs: dict[str, set[str]] = {}
        for site, snap in collect_snapshots(self.conn, MESH, 1.0).items():
            for a in snap.actors:
                if a.path.endswith("/run") and a.state == "running":
                    runs.setdefault(a.path.split("/")[2], set()).add(site)
        return {w: next(iter(s)) for w, s in runs.items() if len(s) == 1}

    def placement(self, up: list[str], workload: str) -> StreamPlacement | None:
        servers = [(s, f"http://127.0.0.1:{self.mesh.configs[s].nats.http_port}") for s in up]
        return stream_placement(servers, lease_stream(MESH, workload))

    def leaders(self, up: list[str]) -> dict[str, str] | None:
        """workload -> the server leading its lease stream; None until every one has one."""
        out = {}
        for w in WORKLOADS:
            p = self.placement(up, w)
            if p is None:
                return None
            out[w] = p.leader
        return out

    def new_leaders(self, up: list[str], old: str) -> bool:
        """The surviving servers name a leader other than the dead one for every stream
        (until an election, they still report the old one)."""
        now = self.leaders(up)
        return now is not None and old not in now.values()

    def wait(self, what: str, pred: Callable[[], object], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            time.sleep(0.2)

    def steady(self) -> dict[str, str]:
        assert self.conn is not None
        conn = self.conn
        self.wait("mesh formed", lambda: wait_formed(conn, MESH, set(SITES), 5), 120)
        self.wait("each workload once", lambda: len(self.holders()) == len(SITES), 120)
        self.wait("stream leaders", lambda: self.leaders(list(SITES)) is not None, 60)
        return self.holders()

    def run(self, i: int) -> Run:
        holders = self.steady()
        leaders = self.leaders(list(SITES))
        assert leaders is not None
        foreign = sorted({leaders[w] for w in WORKLOADS if leaders[w] != holders.get(w)})
        pick_foreign = i % 2 == 0 and foreign
        victim = foreign[(i // 2) % len(foreign)] if pick_foreign else SITES[i % len(SITES)]
        led_foreign = victim in foreign
        healthy = {w for w, s in holders.items() if s != victim}
        copies = {w: copy_of(w, holders[w]) for w in healthy}
        t0 = time.monotonic()
        self.mesh.kill(victim, signal.SIGKILL)
        up = [s for s in SITES if s != victim]
        leaderless = 0.0
        if victim in leaders.values():
            self.wait("new stream leaders", lambda: self.new_leaders(up, victim), 60)
            leaderless = time.monotonic() - t0
        self.wait("the observation window", lambda: time.monotonic() - t0 >= OBSERVE, OBSERVE + 5)
        lost = sum(c is None or not still_runs(c) for c in copies.values())
        events = [
            e
            for e in load_history(
                Path(c.data_dir) / "journal.jsonl" for c in self.mesh.configs.values()
            )
            if e.mono >= t0 and e.workload in healthy and e.site == holders[e.workload]
        ]
        run = Run(
            victim=victim,
            victim_led_stream=led_foreign,
            healthy_fences=sum(e.kind == "fence" for e in events),
            healthy_renew_failures=sum(e.kind == "renew-failed" for e in events),
            leaderless_s=leaderless,
            healthy_copies_lost=lost,
        )
        self.mesh.start([victim], timeout=120)
        return run


def table(runs: list[Run]) -> Table:
    t = Table(title=f"healthy holders' fences when one other site is SIGKILLed ({len(runs)} runs)")
    for col in (
        "killed site",
        "runs",
        "runs with a fence",
        "fences",
        "renew failures",
        "copies lost (process table)",
        "leaderless s (max)",
    ):
        t.add_column(col, justify="left" if col == "killed site" else "right")
    for led, label in ((True, "led another holder's lease stream"), (False, "did not")):
        rs = [r for r in runs if r.victim_led_stream is led]
        if not rs:
            continue
        t.add_row(
            label,
            str(len(rs)),
            str(sum(r.healthy_fences > 0 for r in rs)),
            str(sum(r.healthy_fences for r in rs)),
            str(sum(r.healthy_renew_failures for r in rs)),
            str(sum(r.healthy_copies_lost for r in rs)),
            f"{max(r.leaderless_s for r in rs):.1f}",
        )
    return t


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=24, help="kills in all (default 24)")
    ap.add_argument("--json", help="also write each run here")
    ap.add_argument("--workdir", help="keep configs, logs and journals here (default: temporary)")
    args = ap.parse_args()
    console = Console()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="harmony-bench-sf-") as tmp:
        bench = Bench(Path(args.workdir or tmp), console)
        try:
            with console.status("starting 3 sites..."):
                bench.start()
            for i in range(args.runs):
                r = bench.run(i)
                runs.append(r)
                console.log(
                    f"run {i + 1}/{args.runs}: killed {r.victim} "
                    f"({LED[r.victim_led_stream]}): "
                    f"{r.healthy_fences} healthy-holder fences, "
                    f"{r.healthy_renew_failures} renew failures, "
                    f"{r.healthy_copies_lost} copies lost, leaderless {r.leaderless_s:.1f}s"
                )
        finally:
            bench.stop()
    console.print(table(runs))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in runs], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
