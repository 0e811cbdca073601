"""Simulated peers for `bench/scale.py --simulated`: many lightweight sites in one process.

A simulated site is not an agent. Each one has its own NATS connection with its own identity
(a roster entry and nkey added with `MeshDir.add_site`, TLS with its own certificate), and
on it does what a real agent does on the wire:

* publishes a real `Heartbeat` (harmony.mesh.wire) on its own subject every
  `heartbeat_interval` (the product default), with its own incarnation and sequence;
* holds the subscriptions a real agent holds: heartbeats as a PeerWatch subscribes to
  them (`--listen all`: every site's, `harmony.<mesh>.*.hb`, as an all-core mesh;
  `interest`: one subject per site it hears, as an edge with interest scoping, given per
  peer in the names file; `none`), its own actor subjects (tell and ask) and the snapshot
  subjects, answering a snapshot request with a minimal `Snapshot` (no actors; the sites
  it hears as peers) so that `harmony status --all` hears from it;
* writes its site summary (`harmony.mesh.summaries`) every `SUMMARY_INTERVAL`, as an
  agent does, so that `harmony status` counts it.

It decodes nothing it receives (it counts): its CPU is the harness's, not the product's.
Every simulated site runs as tasks of one asyncio loop in one process (`PeersProcess`
starts it in its own process group and stops the whole group). Counters go to a JSON
stats file once a second; the ready file appears once every peer is connected and
subscribed.

    .venv/bin/python bench/scale_peers.py --mesh-dir D --mesh M --servers URL,URL \\
        --names names.txt --ready-file ready --stats-file stats.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.errors import SlowConsumerError

from harmony.actors.messages import Capacity, Heartbeat, PeerInfo, Snapshot
from harmony.config import Timings
from harmony.guard import atomic_write
from harmony.mesh import subjects, summaries, wire
from harmony.security.identity import site_identity
from harmony.security.material import MeshDir

CONNECT_AT_ONCE = 32
"""TLS handshakes in flight at once while the peers connect."""
PENDING_MSGS = 1_000
PENDING_BYTES = 1 << 20
"""Per subscription: what nats-py keeps queued before it drops (counted as slow consumer);
small, so that a harness that cannot keep up drops instead of growing."""


def add_peers(mesh_dir: Path, names: Sequence[str]) -> None:
    """Give each simulated site its material and roster entry (those it has are kept)."""
    md = MeshDir(Path(mesh_dir))
    have = set(md.roster().sites)
    md.add_sites({name: () for name in names if name not in have})


@dataclass
class Counters:
    peers: int = 0
    connected: int = 0
    hb_sent: int = 0
    hb_received: int = 0
    snapshots: int = 0
    summaries: int = 0
    actor_msgs: int = 0
    slow_consumer: int = 0
    disconnects: int = 0
    reconnects: int = 0
    errors: int = 0
    last_error: str = ""


@dataclass
class Peer:
    name: str
    mesh: str
    mesh_dir: Path
    servers: list[str]
    interval: float
    listen: str
    n: Counters
    known: list[PeerInfo] = field(default_factory=list)
    hears: list[str] = field(default_factory=list)
    incarnation: str = field(default_factory=lambda: secrets.token_hex(6))
    nc: Any = None
    seq: int = 0

    async def connect(self, deadline: float) -> None:
        kw = site_identity(self.mesh_dir, self.name).connect_kwargs()

        async def on_error(e: Exception) -> None:
            if isinstance(e, SlowConsumerError):
                self.n.slow_consumer += 1
            else:
                self.n.errors += 1
                self.n.last_error = f"{self.name}: {type(e).__name__}: {e}"[:300]

        async def on_disconnected() -> None:
            self.n.disconnects += 1

        async def on_reconnected() -> None:
            self.n.reconnects += 1

        while True:
            try:
                self.nc = await nats.connect(
                    servers=self.servers,
                    name=f"sim-{self.name}",
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    connect_timeout=10,
                    ping_interval=5,
                    max_outstanding_pings=2,
                    dont_randomize=True,
                    error_cb=on_error,
                    disconnected_cb=on_disconnected,
                    reconnected_cb=on_reconnected,
                    **kw,
                )
                break
            except Exception as e:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name}: cannot connect: {e}") from e
                await asyncio.sleep(0.5)
        site = self.name
        subs = [
            (subjects.actor_wildcard(self.mesh, site, subjects.TELL), self.on_actor),
            (subjects.actor_wildcard(self.mesh, site, subjects.ASK), self.on_actor),
            (subjects.snapshot(self.mesh, site), self.on_snapshot),
            (subjects.snapshot_all(self.mesh), self.on_snapshot),
        ]
        for subject, cb in subs:
            await self.nc.subscribe(
                subject, cb=cb, pending_msgs_limit=PENDING_MSGS, pending_bytes_limit=PENDING_BYTES
            )
        await self.nc.flush(10)
        self.n.connected += 1

    async def hear(self) -> None:
        """Heartbeats, as a PeerWatch hears them (after every peer is connected: a loop
        busy with heartbeats would stretch the other peers' TLS handshakes)."""
        heard = {
            "all": [subjects.heartbeats(self.mesh)],
            "interest": [subjects.heartbeat(self.mesh, s) for s in self.hears],
        }.get(self.listen, [])
        for subject in heard:
            await self.nc.subscribe(
                subject,
                cb=self.on_heartbeat,
                pending_msgs_limit=PENDING_MSGS,
                pending_bytes_limit=PENDING_BYTES,
            )

    async def on_heartbeat(self, msg: Any) -> None:
        self.n.hb_received += 1

    async def on_actor(self, msg: Any) -> None:
        self.n.actor_msgs += 1

    async def on_snapshot(self, msg: Any) -> None:
        if not msg.reply:
            return
        snap = Snapshot(
            mesh=self.mesh,
            site=self.name,
            witness=False,
            incarnation=self.incarnation,
            mono=time.monotonic(),
            wall=time.time(),
            actors=[],
            peers=self.known,
        )
        await self.nc.publish(msg.reply, wire.encode(snap))
        self.n.snapshots += 1

    async def beat(self) -> None:
        """Heartbeats at the interval, from a random phase; a late tick is not caught up
        in a burst (as the agent's timer)."""
        loop = asyncio.get_running_loop()
        subject = subjects.heartbeat(self.mesh, self.name)
        capacity = Capacity(cpus=os.cpu_count() or 1, load1=0.0, mem_available_mb=1024)
        due = loop.time() + random.uniform(0, self.interval)
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            due += self.interval
            if loop.time() - due > self.interval:
                due = loop.time() + self.interval
            self.seq += 1
            hb = Heartbeat(
                mesh=self.mesh,
                site=self.name,
                seq=self.seq,
                incarnation=self.incarnation,
                mono=time.monotonic(),
                wall=time.time(),
                interval=self.interval,
                capacity=capacity,
            )
            await self.nc.publish(subject, wire.encode(hb))
            self.n.hb_sent += 1
            if self.seq % round(summaries.SUMMARY_INTERVAL / self.interval) == 1:
                await self.summarize()

    async def summarize(self) -> None:
        summary = summaries.SiteSummary(
            site=self.name,
            incarnation=self.incarnation,
            state="running",
            wall=time.time(),
            peers={"alive": len(self.known)} if self.known else {},
        )
        subject = summaries.key_subject(self.mesh, self.name)
        await self.nc.publish(subject, summaries.encode(summary))
        self.n.summaries += 1


async def run_peers(args: argparse.Namespace) -> int:
    lines = [ln.split() for ln in Path(args.names).read_text().splitlines() if ln.strip()]
    names = [ln[0] for ln in lines]
    hears = {ln[0]: ln[1].split(",") if len(ln) > 1 else [] for ln in lines}
    known = [PeerInfo(site=s, state="alive") for s in args.known.split(",") if s]
    servers = args.servers.split(",")
    n = Counters(peers=len(names))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stats_file = Path(args.stats_file)

    def write_stats() -> None:
        atomic_write(stats_file, json.dumps(n.__dict__).encode(), 0o644)

    async def stats_forever() -> None:
        while True:
            write_stats()
            await asyncio.sleep(1.0)

    peers = [
        # Peer i dials core server i mod k first: the peers spread over the core.
        Peer(
            name,
            args.mesh,
            Path(args.mesh_dir),
            servers[i % len(servers) :] + servers[: i % len(servers)],
            args.interval,
            args.listen,
            n,
            [PeerInfo(site=s, state="alive") for s in hears[name]] if hears[name] else known,
            hears[name],
        )
        for i, name in enumerate(names)
    ]
    tasks = [asyncio.create_task(stats_forever())]
    gate = asyncio.Semaphore(CONNECT_AT_ONCE)
    deadline = time.monotonic() + args.timeout

    async def connect(p: Peer) -> None:
        async with gate:
            await p.connect(deadline)

    async def start() -> None:
        await asyncio.gather(*(connect(p) for p in peers))
        for p in peers:
            await p.hear()
            tasks.append(asyncio.create_task(p.beat()))

    starting = asyncio.create_task(start())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if starting.done() and starting.exception() is not None:
        print(f"peers did not start: {starting.exception()}", file=sys.stderr, flush=True)
        code = 1
    elif starting.done():
        write_stats()
        Path(args.ready_file).write_text(f"{len(peers)}\n")
        print(f"{len(peers)} simulated peers up", flush=True)
        await stopped
    starting.cancel()
    for t in tasks:
        t.cancel()
    closing = [asyncio.wait_for(p.nc.close(), 3) for p in peers if p.nc is not None]
    await asyncio.gather(*closing, return_exceptions=True)
    write_stats()
    return code


# ---------------------------------------------------------------------- the parent's side
@dataclass
class PeersProcess:
    """The helper process, seen from the bench (or a test): start, wait, read, stop."""

    workdir: Path
    proc: subprocess.Popen[bytes]

    @property
    def ready_file(self) -> Path:
        return self.workdir / "peers.ready"

    @property
    def stats_file(self) -> Path:
        return self.workdir / "peers-stats.json"

    @property
    def log_file(self) -> Path:
        return self.workdir / "peers.log"

    @classmethod
    def start(
        cls,
        workdir: Path,
        mesh_dir: Path,
        mesh: str,
        servers: Sequence[str],
        names: Sequence[str],
        *,
        hears: Mapping[str, Sequence[str]] | None = None,
        listen: str = "all",
        known: Sequence[str] = (),
        interval: float = Timings().heartbeat_interval,
        timeout: float = 300.0,
        python: str = sys.executable,
    ) -> PeersProcess:
        workdir.mkdir(parents=True, exist_ok=True)
        hears = hears or {}
        lines = [f"{n} {','.join(hears[n])}" if hears.get(n) else n for n in names]
        (workdir / "peers.names").write_text("\n".join(lines) + "\n")
        for f in ("peers.ready", "peers-stats.json"):
            with contextlib.suppress(FileNotFoundError):
                (workdir / f).unlink()
        cmd = [
            python,
            str(Path(__file__).resolve()),
            f"--mesh-dir={mesh_dir}",
            f"--mesh={mesh}",
            f"--servers={','.join(servers)}",
            f"--names={workdir / 'peers.names'}",
            f"--ready-file={workdir / 'peers.ready'}",
            f"--stats-file={workdir / 'peers-stats.json'}",
            f"--listen={listen}",
            f"--known={','.join(known)}",
            f"--interval={interval}",
            f"--timeout={timeout}",
        ]
        with open(workdir / "peers.log", "ab") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        return cls(workdir, proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, n: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-n:])
        return ""

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"peers exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"peers not ready within {timeout:g} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def stats(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.stats_file.read_text()))
        except (OSError, ValueError):
            return {}

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM the group (the peers close their connections), SIGKILL what is left."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        return self.proc.returncode


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mesh-dir", required=True)
    p.add_argument("--mesh", required=True)
    p.add_argument("--servers", required=True, help="comma-separated client URLs")
    p.add_argument("--names", required=True, help="file: a line per peer: NAME [HEARS,...]")
    p.add_argument("--ready-file", required=True)
    p.add_argument("--stats-file", required=True)
    p.add_argument("--listen", choices=("all", "interest", "none"), default="all")
    p.add_argument("--known", default="", help="sites a snapshot names as peers (comma-sep.)")
    p.add_argument("--interval", type=float, default=Timings().heartbeat_interval)
    p.add_argument("--timeout", type=float, default=300.0, help="to connect every peer")
    args = p.parse_args()
    return asyncio.run(run_peers(args))


if __name__ == "__main__":
    sys.exit(main())
