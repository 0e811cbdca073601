"""A long fuzz run against one real agent: mutated frames on its ask, tell and heartbeat
subjects, as fast as this process can send them, then a table.

    python bench/fuzz.py [--frames 300000] [--seed N] [--ask-share 0.05] [--paced | --flood]

One `harmony agent` (site a of mesh `fuzz`, with its embedded nats-server; b is named in its
config and never runs) takes frames from every kind of sender: b and the operator (known),
zz and a itself (refused as unknown). The frames are made by tests/support/fuzzing.py (bit
flips, truncation, invalid UTF-8, wrong field types, random structs, control characters,
nesting, random bytes, oversized frames). Asks are sent one at a time and each must be
answered; tells and heartbeats are published without waiting.

Made one at a time, frames leave at the generator's pace (a few thousand a second), under
the senders' rate limits; `--paced` makes sure of it, and then also checks that the agent's
counters equal the reasons the rules give, reason by reason. `--flood` makes every frame
first (tells and heartbeats only) and then publishes them all at once: the agent's own rate
of refusing, with the known senders far over their rate (`rate-limited`). The table: frames sent
per second, what the agent counted by reason, asks answered, the agent's RSS before and after,
and whether it is the same agent with nothing restarted.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import tempfile
import time
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.fuzzing import (
    expect_actor,
    expect_heartbeat,
    harmful,
    heartbeat,
    mutate,
    oversized,
    seeds,
)

from harmony.actors.exports import ExportPolicy, mesh_sites
from harmony.actors.messages import Ping, Pong, Snapshot, SnapshotRequest
from harmony.actors.site import SITE_PATH
from harmony.config import (
    FailoverTopologyConfig,
    ProcessDriverConfig,
    Timings,
    WorkloadConfig,
    load_config,
)
from harmony.mesh import subjects, wire
from harmony.mesh.admission import RATE_BURST, RATE_PER_SENDER
from harmony.mesh.connection import MeshConnection, NoResponders
from harmony.sim.launch import LocalMesh

MESH = "fuzz"
PATHS = [SITE_PATH, "agent", "agent/workload/ledger", "agent/workload/ledger/run", "agent/peers"]


def snapshot(conn: MeshConnection) -> Snapshot:
    raw = conn.request(subjects.snapshot(MESH, "a"), wire.encode(SnapshotRequest()), 10)
    snap = wire.decode(raw)
    assert isinstance(snap, Snapshot)
    return snap


def rss_mb(pid: int) -> float:
    """Resident set of `pid` in MiB."""
    return psutil.Process(pid).memory_info().rss / 2**20


def run(args: argparse.Namespace, workdir: Path) -> int:
    ledger = WorkloadConfig(
        name="ledger",
        driver=ProcessDriverConfig(command=["sleep", "600"]),
        topology=FailoverTopologyConfig(primary="a", standbys=["b"]),
        strategy="split-brain-allowed",
    )
    timings = Timings(heartbeat_interval=0.2, suspect_after=1.5, silent_after=2.5)
    mesh = LocalMesh(workdir, mesh=MESH, sites=("a",), timings=timings, workloads=[ledger])
    console = Console()
    try:
        mesh.start(timeout=60)
        proc = mesh.procs["a"].proc
        assert proc is not None
        cfg = load_config(mesh.procs["a"].config_path)
        policy, known = ExportPolicy(cfg), mesh_sites(cfg) - {"a"}
        conn = MeshConnection(mesh.client_urls(), "fuzzer").start()
        conn.wait_connected(10)
        try:
            return attack(args, console, conn, policy, known, proc.pid, mesh)
        finally:
            conn.close()
    finally:
        mesh.stop()


def attack(
    args: argparse.Namespace,
    console: Console,
    conn: MeshConnection,
    policy: ExportPolicy,
    known: frozenset[str],
    pid: int,
    mesh: LocalMesh,
) -> int:
    rng = random.Random(args.seed)
    pool = seeds(MESH, "b")
    first = snapshot(conn)
    rss_before = rss_mb(pid)
    sent: collections.Counter[str] = collections.Counter()
    expected: collections.Counter[str] = collections.Counter()
    per_sender: collections.Counter[str] = collections.Counter()
    unanswered = 0
    ask_share = 0.0 if args.flood else args.ask_share
    shares = [ask_share, (1 - ask_share) * 0.6, (1 - ask_share) * 0.4]
    queued: list[tuple[str, bytes]] = []

    def send(subject: str, frame: bytes) -> None:
        if args.flood:
            queued.append((subject, frame))
        else:
            conn.publish(subject, frame)

    t0 = time.monotonic()
    for i in range(args.frames):
        channel = rng.choices(["ask", "tell", "hb"], shares)[0]
        if channel == "hb":
            site = rng.choice(["b", "zz"])
            msg = heartbeat(MESH, rng.choice([site, "b", "zz"]), witness=rng.random() < 0.2)
            frame = oversized(msg) if i % 20_000 == 0 else mutate(rng, msg)
            expected[str(expect_heartbeat(MESH, known, site, frame))] += 1
            send(subjects.heartbeat(MESH, site), frame)
            sent[channel] += 1
            continue
        many = channel == "tell"
        sender = rng.choices(["b", subjects.OPERATOR, "zz", "a"], [10, 10, 1, 1])[0]
        path = rng.choice(PATHS)
        if i % 20_000 == 1:
            frame = oversized(rng.choice(pool))
        elif many:
            frame = wire.frame_tells([mutate(rng, rng.choice(pool)) for _ in range(2)])
        else:
            frame = mutate(rng, rng.choice(pool))
        if harmful(frame, many):
            continue
        if args.paced and sender in (subjects.OPERATOR, *known):
            per_sender[sender] += 1
            ahead = (per_sender[sender] - 0.5 * RATE_BURST) / (0.5 * RATE_PER_SENDER)
            if ahead > time.monotonic() - t0:
                time.sleep(ahead - (time.monotonic() - t0))  # pacing, not waiting
        expected[str(expect_actor(policy, sender, path, frame, many))] += 1
        subject = subjects.actor(MESH, "a", channel, sender, path)
        if many:
            send(subject, frame)
        else:
            try:
                wire.decode(conn.request(subject, frame, timeout=5))
            except TimeoutError:
                unanswered += 1
        sent[channel] += 1
    if args.flood:
        t0 = time.monotonic()
        for subject, frame in queued:
            conn.publish(subject, frame)
    elapsed = time.monotonic() - t0
    flush = subjects.actor(MESH, "a", subjects.ASK, subjects.OPERATOR, SITE_PATH)
    deadline = time.monotonic() + 60
    while True:  # the agent may still be working through what was queued, or reconnecting
        try:
            pong = wire.decode(conn.request(flush, wire.encode(Ping(text="end")), timeout=10))
            break
        except (TimeoutError, NoResponders):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)  # a retry's pace, not a wait for a condition
    drained = time.monotonic() - t0
    last = snapshot(conn)
    rss_after = rss_mb(pid)
    counted = {
        k: v - first.rejected.get(k, 0)
        for k, v in last.rejected.items()
        if v != first.rejected.get(k, 0)
    }
    table = Table(title=f"fuzz: {sum(sent.values())} frames, seed {args.seed}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("frames sent", f"{sum(sent.values()):,} ({dict(sent)})")
    table.add_row("sending took", f"{elapsed:.1f} s ({sum(sent.values()) / elapsed:,.0f} frames/s)")
    total = sum(sent.values())
    table.add_row("handled by the agent after", f"{drained:.1f} s ({total / drained:,.0f}/s)")
    for reason, n in sorted(counted.items()):
        table.add_row(f"rejected: {reason}", f"{n:,}")
    want = {k: v for k, v in expected.items() if k != "None"}
    table.add_row("expected by the rules (unpaced: before rate limiting)", str(dict(want)))
    table.add_row("asks unanswered", str(unanswered))
    log = mesh.procs["a"].log_path.read_text(errors="replace")
    dropped = log.count("mesh connection disconnected")
    table.add_row("agent's connection dropped by its server", f"{dropped} time(s)")
    table.add_row("agent RSS before / after", f"{rss_before:.1f} / {rss_after:.1f} MB")
    same = last.incarnation == first.incarnation and all(a.restarts == 0 for a in last.actors)
    table.add_row("same agent, nothing restarted", str(same and mesh.procs["a"].running))
    console.print(table)
    ok = same and unanswered == 0 and pong == Pong(text="end", site="a")
    if args.paced:
        ok = ok and counted == want
        console.print("counters equal the rules' reasons" if counted == want else "MISMATCH")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--frames", type=int, default=300_000)
    p.add_argument("--seed", type=int, default=int(time.time()))
    p.add_argument("--ask-share", type=float, default=0.05)
    how = p.add_mutually_exclusive_group()
    how.add_argument("--paced", action="store_true", help="stay under the per-sender rate")
    how.add_argument("--flood", action="store_true", help="make every frame, then send at once")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="harmony-fuzz-") as d:
        return run(args, Path(d))


if __name__ == "__main__":
    sys.exit(main())
