"""The process table's word on what runs: tests judge from it, not from what agents say."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from support.waiting import wait_until


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (orphans may never be reaped here)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :][:1] not in (b"Z", b"X")


def read_pid(path: Path, timeout: float = 5.0) -> int:
    """Wait for a pid file written by a test process and return the pid in it."""
    wait_until(lambda: path.exists() and path.read_text().strip(), timeout, f"{path} written")
    return int(path.read_text().strip())


def tcp_port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
