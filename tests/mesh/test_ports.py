"""Free ports: distinct, bindable, and outside the range the kernel gives outgoing
connections (a chosen port taken by a connection's source port broke a 60-site start)."""

from __future__ import annotations

import os
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
    monkeypatch.delenv(ports.RANGE_ENV, raising=False)  # a test worker's own slice
    assert ports.candidates() == []
    chosen = free_ports(5)
    assert len(set(chosen)) == 5 and all(p > 0 for p in chosen)


def test_a_range_in_the_environment_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ports.RANGE_ENV, "23000-23100")
    chosen = ports.free_ports(20)
    assert all(23000 <= p < 23100 for p in chosen), chosen
    for bad in ("23000", "a-b", "23100-23000", "80-90"):
        monkeypatch.setenv(ports.RANGE_ENV, bad)
        with pytest.raises(ValueError, match=ports.RANGE_ENV):
            ports.free_ports(1)


def test_each_test_worker_chooses_from_a_slice_of_its_own() -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker or int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) < 2:
        pytest.skip("not run by two or more xdist workers")
    low, high = ports.parse_range(os.environ[ports.RANGE_ENV])
    whole = ports.default_range()
    assert whole is not None and whole[0] <= low < high <= whole[1]
    assert all(low <= p < high for p in ports.free_ports(10))


def test_a_port_handed_out_is_not_handed_out_again_soon(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its server may not have bound it yet: a second call must not take it meanwhile."""
    monkeypatch.setattr(ports, "_handed_out", {})
    monkeypatch.setenv(ports.RANGE_ENV, "24000-24040")
    first = free_ports(20)
    second = free_ports(20)  # the rest of the range, if nothing else holds one of them
    assert not set(first) & set(second)
    assert all(24000 <= p < 24040 for p in first)
