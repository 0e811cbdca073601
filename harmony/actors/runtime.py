"""The agent process: embedded nats-server, the connection thread, the bridge, the actor tree.

Start-up order is bottom-up (server, connection, bridge, actors) and shutdown top-down, so
workloads are stopped while the mesh can still hear about it.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import msgspec
import pykka
from nats.aio.msg import Msg

from harmony.actors.agent import ROOT_PATH, AgentSupervisor
from harmony.actors.base import AgentContext
from harmony.actors.board import Board, PeerView
from harmony.actors.clock import Clock, SystemClock
from harmony.actors.exports import ExportPolicy
from harmony.actors.journal import Journal
from harmony.actors.messages import ActorInfo, Snapshot
from harmony.actors.metrics import MetricsServer, serve_metrics
from harmony.actors.timers import Scheduler
from harmony.actors.workload_supervisor import Drain
from harmony.config import ConfigError, SiteConfig, kv_replicas
from harmony.config.slots import expand, horizontal_workloads
from harmony.mesh import subjects, wire
from harmony.mesh.admission import rate_from_env
from harmony.mesh.connection import MeshConnection, MeshUnavailable
from harmony.mesh.leases import BucketMismatch, LeaseStore
from harmony.mesh.mesh_info import CoresDisagree, agree_on_cores
from harmony.mesh.remote import ActorDirectory, Bridge
from harmony.mesh.server import EmbeddedServer, ServerSpec
from harmony.private_files import NotOurs, secure_data_dir
from harmony.security.identity import Identity, site_identity
from harmony.strategies.registry import uses_lease
from harmony.textsafe import redact_url

log = logging.getLogger(__name__)


class MeshDisagrees(Exception):
    """This site's configuration disagrees with what the mesh already runs with (the lease
    bucket's settings): the agent refuses to start any workload. The CLI exits 2."""


class Agent:
    """Everything one site runs. `start()`, then `wait()` until stopped or escalated."""

    def __init__(self, config: SiteConfig, clock: Clock | None = None) -> None:
        self.horizontal = horizontal_workloads(config)
        self.config = expand(config)  # a horizontal workload runs as its slots
        self.clock = clock or SystemClock()
        self.incarnation = secrets.token_hex(6)
        self.server: EmbeddedServer | None = None
        self.conn: MeshConnection | None = None
        self.bridge: Bridge | None = None
        self.board = Board()
        self.peer_view = PeerView()
        self.directory = ActorDirectory()
        self.scheduler: Scheduler | None = None
        self.root: pykka.ActorRef[AgentSupervisor] | None = None
        self.failure: str | None = None
        self.journal: Journal | None = None
        self.metrics: MetricsServer | None = None
        self._done = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    def servers(self) -> list[str]:
        n = self.config.nats
        if n.mode == "external":
            return list(n.servers)
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(n.host, n.host)
        host = f"[{host}]" if ":" in host else host
        return [f"nats://{host}:{n.client_port}", *n.servers]

    def identity(self) -> Identity | None:
        """The site's credentials on a secure mesh (None: plaintext, anonymous)."""
        sec = self.config.security
        return site_identity(sec.dir, self.config.site) if sec is not None and sec.dir else None

    def start(self, connect_timeout: float = 30.0) -> None:
        cfg = self.config
        self._secure_data_dir()
        self.metrics = serve_metrics(self, self.identity())
        if cfg.nats.mode == "embedded":
            self.server = EmbeddedServer(ServerSpec.from_config(cfg), on_event=self._server_event)
            self.server.start()
        self.conn = MeshConnection(
            self.servers(),
            f"harmony-{cfg.mesh}-{cfg.site}",
            on_state=self._conn_state,
            identity=self.identity(),
        ).start()
        self.conn.wait_connected(connect_timeout)
        self.bridge = Bridge(
            self.conn,
            cfg.mesh,
            cfg.site,
            self.directory,
            cfg.timings.ask_timeout,
            policy=ExportPolicy(cfg),  # the export list: who reaches which actor with what
            rate=rate_from_env(),
        )
        self.bridge.start()
        self.conn.subscribe(subjects.snapshot(cfg.mesh, cfg.site), self._on_snapshot)
        self.conn.subscribe(subjects.snapshot_all(cfg.mesh), self._on_snapshot)
        self.scheduler = Scheduler(self.clock.monotonic)
        self.journal = Journal(
            Path(cfg.data_dir) / "journal.jsonl",
            self.clock,
            cfg.site,
            cfg.mesh,
            self.incarnation,
            self.conn,
        )
        self.journal.record("", "agent-start", f"agent up, incarnation {self.incarnation}")
        leases = LeaseStore(
            self.conn,
            cfg.mesh,
            ttl=cfg.timings.lease_ttl,
            replicas=self.kv_replicas(),
            op_timeout=max(0.5, cfg.timings.renew_interval),
            server=self.server.spec.name if self.server is not None else None,
            own=self.own_leases(),
        )
        ctx = AgentContext(
            config=cfg,
            board=self.board,
            directory=self.directory,
            scheduler=self.scheduler,
            clock=self.clock,
            bridge=self.bridge,
            incarnation=self.incarnation,
            on_escalate=self._escalate,
            peer_view=self.peer_view,
            journal=self.journal,
            leases=leases,
            horizontal=self.horizontal,
        )
        if cfg.nats.cores:
            self._agree_on_cores(connect_timeout)
        if any(uses_lease(w.strategy) for w in cfg.workloads):
            self._ensure_bucket(leases, connect_timeout)
        self.root = AgentSupervisor.start(ctx, ROOT_PATH, None)
        self.bridge.wait_ready(connect_timeout)
        log.info("agent %s/%s up (incarnation %s)", cfg.mesh, cfg.site, self.incarnation)

    def _secure_data_dir(self) -> None:
        """The data_dir is 0700 and ours before anything is written there; one owned by
        another user is refused (ConfigError: its owner could plant deadlines or symlinks)."""
        cfg = self.config
        try:
            note = secure_data_dir(cfg.data_dir)
        except NotOurs as e:
            raise ConfigError(cfg.source or "<config>", "data_dir", str(e)) from None
        except OSError as e:
            why = f"cannot create or secure {cfg.data_dir}: {e.strerror or e}"
            raise ConfigError(cfg.source or "<config>", "data_dir", why) from None
        if note:
            log.warning("%s", note)

    def own_leases(self) -> list[str]:
        """The exclusive workloads whose topology names this site: their lease buckets are
        its to make (and to agree on before it starts)."""
        site = self.config.site
        return [
            w.name
            for w in self.config.workloads
            if uses_lease(w.strategy) and site in (w.topology.primary, *w.topology.standbys)
        ]

    def kv_replicas(self) -> int:
        """R3 by default; fewer only when the mesh has fewer servers than that."""
        return kv_replicas(self.config)

    def _ensure_bucket(self, leases: LeaseStore, timeout: float) -> None:
        """The lease bucket must exist before a lease actor uses it; retry while the
        cluster elects its JetStream leader (a fresh mesh takes a few seconds). A bucket made
        with other timings is refused at once: waiting would not make the sites agree."""

        def refusal(e: Exception) -> str | None:
            return disagreement(self.config, e) if isinstance(e, BucketMismatch) else None

        keys = self.own_leases()
        self._until_agreed(
            lambda: leases.ensure_buckets(keys, timeout=5), refusal, "a lease bucket", timeout
        )

    def _agree_on_cores(self, timeout: float) -> None:
        """A mesh that names its cores: this site's list must be the one the mesh was formed
        with (the first core wrote it; `harmony.mesh.mesh_info`). Retry while the core is
        unreachable or electing; a disagreement is refused at once, naming both lists."""
        cfg = self.config
        assert self.conn is not None
        src = cfg.source or "the site configuration"

        def refusal(e: Exception) -> str | None:
            if not isinstance(e, CoresDisagree):
                return None
            return (
                f"the mesh's cores are {', '.join(e.theirs)} (written by the first core "
                f"to join, in KV bucket {e.bucket}), this site's nats.cores are "
                f"{', '.join(e.ours)} (in {src}): every site of a mesh must name the same cores"
            )

        def attempt() -> None:
            assert self.conn is not None
            role = cfg.nats.role != "edge"
            agree_on_cores(
                self.conn, cfg.mesh, cfg.nats.cores, core=role, replicas=self.kv_replicas()
            )

        self._until_agreed(attempt, refusal, "the mesh's core list", timeout)

    def _until_agreed(
        self,
        attempt: Callable[[], None],
        refusal: Callable[[Exception], str | None],
        what: str,
        timeout: float,
    ) -> None:
        """Run a join check until it passes. An error `refusal` explains is a disagreement
        with the mesh: journaled and refused at once. Any other error (the core unreachable
        or electing) is retried until `timeout`, then the mesh counts as unavailable."""
        deadline = self.clock.monotonic() + timeout
        while True:
            try:
                attempt()
                return
            except Exception as e:
                why = refusal(e)
                if why is not None:
                    if self.journal is not None:
                        self.journal.record("", "agent-refused", why)
                    raise MeshDisagrees(why) from None
                if self.clock.monotonic() > deadline:
                    raise MeshUnavailable(f"{what} is not available: {e}") from None
                log.info("waiting for %s: %s", what, e)
                time.sleep(0.5)

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def request_stop(self) -> None:
        self._done.set()

    def drain(self, timeout: float) -> None:
        """Let every workload stop its copy and release its lease (strategy-driven)."""
        if self.root is None:
            return
        try:
            events = cast(list[threading.Event], self.root.ask(Drain(), timeout=5))
        except Exception as e:
            log.warning("drain: %s", e)
            return
        deadline = self.clock.monotonic() + timeout
        for ev in events:
            if not ev.wait(max(0.0, deadline - self.clock.monotonic())):
                log.warning("drain: a workload did not finish within %.1f s", timeout)

    def stop(self) -> None:
        """Drain workloads, stop the actors, then the mesh connection, then the server."""
        t = self.config.timings
        self.drain(timeout=t.stop_grace + 2 * t.renew_interval + 5)
        if self.journal is not None:
            self.journal.record("", "agent-stop", "agent stopping")
        if self.root is not None:
            try:
                self.root.stop(block=True, timeout=60)
            except Exception as e:  # already dead after an escalation
                log.debug("root stop: %s", e)
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.bridge is not None:
            self.bridge.stop()
        if self.conn is not None:
            self.conn.close()
        if self.server is not None:
            self.server.stop()
        if self.journal is not None:
            self.journal.close()
        if self.metrics is not None:
            self.metrics.close()
        self._done.set()

    def _escalate(self, reason: str) -> None:
        log.critical("agent supervisor gave up: %s", reason)
        self.failure = reason
        self._done.set()

    def _server_event(self, kind: str, detail: str) -> None:
        if kind != "started":
            log.warning("embedded nats-server %s %s", kind, redact_url(detail))

    def _conn_state(self, kind: str, detail: str) -> None:
        log.info("mesh connection %s %s", kind, redact_url(detail))

    # ------------------------------------------------------------------ snapshot
    def snapshot(self) -> Snapshot:
        now = self.clock.monotonic()
        stats = self.bridge.stats if self.bridge else None
        nc = self.conn.nc if self.conn else None
        url = nc.connected_url.netloc if nc is not None and nc.connected_url else ""
        return Snapshot(
            mesh=self.config.mesh,
            site=self.config.site,
            witness=self.config.witness,
            incarnation=self.incarnation,
            mono=now,
            wall=self.clock.wall(),
            actors=[_with_expiry(a, now) for a in self.board.lines()],
            peers=self.peer_view.read(now),
            malformed=stats.malformed if stats else 0,
            unknown_actor=stats.unknown_actor if stats else 0,
            nats_url=redact_url(url),
            rejected=stats.rejected() if stats else {},
            labels=self.config.labels,
            site_capacity=self.config.capacity,
        )

    def _on_snapshot(self, msg: Msg) -> None:
        """On the loop thread: reads the board only, never waits for an actor."""
        if msg.reply and self.conn is not None:
            self.conn.publish(msg.reply, wire.encode(self.snapshot()))


def disagreement(cfg: SiteConfig, e: BucketMismatch) -> str:
    """Say which setting differs, both values, and where this site's value comes from."""
    src = cfg.source or "the site configuration"
    said, timings = [], False
    names = {s.name for s in e.settings}
    for s in e.settings:
        has, ours = s.show(s.bucket), s.show(s.ours)
        if s.name == "max_age":
            timings = True
            said.append(
                f"lease bucket {e.bucket} has max_age {has}, this site's lease_ttl is {ours} "
                f"(timings.lease_ttl in {src})"
            )
        elif s.name == "replicas":
            how = (
                "nats.kv_replicas"
                if cfg.nats.kv_replicas
                else ("nats.kv_replicas = 0, i.e. min(3, servers in the mesh)")
            )
            said.append(
                f"lease bucket {e.bucket} has {has} replicas, this site's is {ours} "
                f"({how} in {src})"
            )
        elif "max_age" not in names:  # the marker TTL follows lease_ttl: said once is enough
            timings = True
            said.append(
                f"lease bucket {e.bucket} has limit marker TTL {has}, this site's is {ours} "
                f"(max(1 s, timings.lease_ttl) in {src})"
            )
    what = "lease timings" if timings else "lease bucket replicas (set nats.kv_replicas)"
    if timings and "replicas" in names:
        what = "lease timings and lease bucket replicas"
    return "; ".join(said) + f": every site of a mesh must use the same {what}"


def _with_expiry(info: ActorInfo, now: float) -> ActorInfo:
    """A deadline kept as monotonic `fence_at` becomes a relative `fence_in` for readers."""
    at = info.detail.get("fence_at")
    if not at:
        return info
    detail = {k: v for k, v in info.detail.items() if k != "fence_at"}
    detail["fence_in"] = f"{float(at) - now:.1f}s"
    return msgspec.structs.replace(info, detail=detail)
