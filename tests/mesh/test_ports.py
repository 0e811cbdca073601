"""Free ports: distinct, bindable, and outside the range the kernel gives outgoing
connections (a chosen port taken by a connection's source port broke a 60-site start)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from harmony.mesh import ports
from harmony.mesh.ports import free_ports


def ephemeral_low() -> int:
    return int(Path(ports.EPHEMERAL_RANGE).read_text().split()[0])


def bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.skipif(not Path(ports.EPHEMERAL_RANGE).exists(), reason="no procfs port range")
def test_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    chosen = free_ports(50)
    assert len(set(chosen)) == 50
    low = ephemeral_low()
    if low > ports.LOWEST:
        assert all(ports.LOWEST <= p < low for p in chosen)
    assert all(bindable(p) for p in chosen)


def test_a_port_in_use_is_never_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        taken = busy.getsockname()[1]
        busy.listen()
        monkeypatch.setattr(ports, "candidates", lambda: [12345, taken])  # popped from the end
        chosen = free_ports(2)
    assert taken not in chosen and len(set(chosen)) == 2


def test_without_the_range_the_kernel_chooses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE", str(tmp_path / "missing"))
    assert ports.candidates() == []
    chosen = free_ports(5)
    assert len(set(chosen)) == 5 and all(p > 0 for p in chosen)
