"""Free TCP ports for servers started by tests, simulations and demos."""

from __future__ import annotations

import socket
from contextlib import ExitStack

__all__ = ["free_ports"]


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """Return `n` distinct TCP ports that were free on `host` a moment ago.

    Each port comes from binding a socket to port 0. All sockets are held open until all `n`
    ports are chosen, so the kernel never hands out the same port twice. The ports are
    released on return: another process could still take one before the caller binds it,
    which is why servers started on them must report a failure to bind (see
    `harmony.mesh.server.ServerStartError`).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    ports: list[int] = []
    with ExitStack() as stack:
        for _ in range(n):
            sock = stack.enter_context(socket.socket(family, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
    return ports
