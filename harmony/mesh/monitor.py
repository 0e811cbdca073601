"""Readiness of nats-servers, as they report it on their monitoring port and by a real write.

`EmbeddedServer.start` waits for `serves`; `wait_jetstream_ready` waits until a whole
cluster has a JetStream meta leader and, given client URLs, accepts replicated KV writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, TypedDict, Unpack

from harmony.mesh.server_conf import ServerSpec, connect_host, hostport

log = logging.getLogger(__name__)

# --- monitoring endpoint --------------------------------------------------------------------


# Monitoring endpoints are local or on the mesh network: never send them to an HTTP proxy.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout: float = 1.0) -> tuple[int, str]:
    """(status, body) of a GET; status 0 when nothing answered."""
    try:
        with _opener.open(url, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return 0, ""


def http_json(url: str, timeout: float = 1.0) -> dict[str, Any] | None:
    """The JSON object a GET answers with; None for anything else (no answer, not 200)."""
    status, body = http_get(url, timeout)
    if status != 200:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def tcp_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on `host`:`port`."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def serves(spec: ServerSpec) -> bool:
    """Whether the server of `spec` is up and serving: its monitoring port answers as that
    server (another process may hold the port before ours binds, or fails to), healthy (with
    JetStream when clustered), and its client port accepts connections."""
    varz = http_json(f"{spec.http_url}/varz")
    if varz is None or varz.get("server_name") != spec.name:
        return False
    if varz.get("port") != spec.client_port:
        return False
    query = "" if not spec.clustered else "?js-enabled-only=true"
    status, _ = http_get(f"{spec.http_url}/healthz{query}")
    if status != 200:
        return False
    return tcp_accepts(connect_host(spec.host), spec.client_port)


# --- cluster readiness ----------------------------------------------------------------------


class ReadyOptions(TypedDict, total=False):
    """The options of `jetstream_ready` (defaults there), which its blocking form passes on."""

    client_urls: Sequence[str]
    replicas: int | None
    timeout: float
    host: str


def _http_base(target: str | int, host: str) -> str:
    if isinstance(target, int):
        return f"http://{hostport(host, target)}"
    return target.rstrip("/")


def _meta_state(base: str) -> tuple[str, int, int] | None:
    """(leader name, known peers, cluster size) from /jsz, or None."""
    jsz = http_json(f"{base}/jsz")
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
            status, body = await loop.run_in_executor(None, http_get, f"{base}/healthz")
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


def wait_jetstream_ready(http: Iterable[str | int], **options: Unpack[ReadyOptions]) -> None:
    """Blocking form of `jetstream_ready`, for threads without a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("wait_jetstream_ready blocks; on an event loop await jetstream_ready")
    asyncio.run(jetstream_ready(http, **options))
