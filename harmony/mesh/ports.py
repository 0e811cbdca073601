"""Free TCP ports for servers started by tests, simulations and demos."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from contextlib import ExitStack

LOWEST = 10000
"""Ports are chosen from here up to the kernel's ephemeral range."""
EPHEMERAL_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"
RANGE_ENV = "HARMONY_PORT_RANGE"
"""``LO-HI``: choose from these ports only. Processes that start servers side by side (the
test suite's workers) each take a slice of their own: a port chosen by one and bound a moment
later by its server is then never chosen by the other meanwhile."""

RECENT = 600.0
"""Seconds a port handed out by `free_ports` is not handed out again by this process."""

__all__ = ["free_ports"]

_lock = threading.Lock()
_handed_out: dict[int, float] = {}


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """Return `n` distinct TCP ports that were free on `host` a moment ago.

    They come from *below* the kernel's ephemeral range when it leaves room (see
    `candidates`): a port the kernel hands out for port 0 is one it also hands out as the
    source port of outgoing connections, and a mesh of 60 sites started over minutes saw a
    site's chosen port taken by another process's connection before its server bound it.
    Every port is held by a bound socket until all `n` are chosen. They are released on
    return: another process could still take one before the caller binds it, which is why
    servers started on them must report a failure to bind (see
    `harmony.mesh.server.ServerStartError`).

    A port this process handed out in the last `RECENT` seconds is never handed out again:
    between two calls the first caller's server may not have bound its port yet (a test's
    proxies took the monitor port chosen a moment before for a server not yet started).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    ports: list[int] = []
    now = time.monotonic()
    with _lock:
        for port, at in list(_handed_out.items()):
            if now - at > RECENT:
                del _handed_out[port]
        pool = [p for p in candidates() if p not in _handed_out]
        with ExitStack() as stack:
            while len(ports) < n:
                sock = stack.enter_context(socket.socket(family, socket.SOCK_STREAM))
                port = pool.pop() if pool else 0
                try:
                    sock.bind((host, port))
                except OSError:
                    continue  # in use: the next candidate
                ports.append(int(sock.getsockname()[1]))
        _handed_out.update(dict.fromkeys(ports, now))
    return ports


def candidates() -> list[int]:
    """Ports of `RANGE_ENV` if set, else between `LOWEST` and the start of the ephemeral
    range, shuffled; [] when the range is unknown or leaves no room (then the kernel's
    choice, port 0, is used)."""
    chosen = os.environ.get(RANGE_ENV)
    if chosen:
        low, high = parse_range(chosen)
        pool = list(range(low, high))
    else:
        default = default_range()
        if default is None:
            return []
        pool = list(range(*default))
    random.shuffle(pool)
    return pool


def default_range() -> tuple[int, int] | None:
    """[LOWEST, start of the kernel's ephemeral range), or None when unknown or empty."""
    try:
        with open(EPHEMERAL_RANGE) as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return (LOWEST, low) if low > LOWEST else None


def parse_range(text: str) -> tuple[int, int]:
    """``LO-HI`` (HI excluded) as two ints; ValueError naming `RANGE_ENV` otherwise."""
    try:
        low, high = (int(p) for p in text.split("-"))
    except ValueError:
        raise ValueError(f"{RANGE_ENV}={text!r}: expected LO-HI, e.g. 20000-30000") from None
    if not 1024 <= low < high <= 65536:
        raise ValueError(f"{RANGE_ENV}={text!r}: need 1024 <= LO < HI <= 65536")
    return low, high
