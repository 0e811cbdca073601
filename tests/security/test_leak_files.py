"""The data_dir is private: 0700 directories, 0600 files, no symlink followed, and a
data_dir owned by another user refused. Real agent (embedded nats-server, a real workload
under a lease), real files."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.waiting import wait_until

from harmony.actors.drivers.tether import DeadlineHandoff, TetherSpec
from harmony.actors.journal import Journal, JournalEvent, append_event
from harmony.actors.runtime import Agent
from harmony.config import (
    ConfigError,
    FailoverTopologyConfig,
    NatsConfig,
    ProcessDriverConfig,
    SiteConfig,
    WorkloadConfig,
)
from harmony.guard import atomic_write, read_deadline, write_deadline
from harmony.mesh.ports import free_ports

VICTIM = "precious\n"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file elsewhere that a planted symlink points at: it must never change."""
    v = tmp_path / "elsewhere" / "victim"
    v.parent.mkdir()
    v.write_text(VICTIM)
    return v


def test_deadline_write_replaces_a_planted_symlink_never_follows_it(
    tmp_path: Path, victim: Path
) -> None:
    spec = TetherSpec(tmp_path / "tether" / "w", tmp_path / "journal.jsonl", "inc")
    handoff = DeadlineHandoff(spec)
    handoff.reset()
    path = spec.deadline_file(7)
    path.symlink_to(victim)
    handoff.offer(7, 100.0, clock_now=50.0)
    assert victim.read_text() == VICTIM
    assert not path.is_symlink() and read_deadline(path) is not None
    assert mode(path) == 0o600 and mode(spec.deadline_dir) == 0o700
    handoff.release(7)
    assert victim.read_text() == VICTIM and path.read_text() == "released\n"


def test_atomic_write_never_writes_through_a_symlink_at_its_temp_name(
    tmp_path: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "w.deadline"
    names = iter([0xBAD, 0xBAD, 0x600D])  # the first two are planted
    monkeypatch.setattr("harmony.guard.temp_tag", lambda: next(names))
    planted = tmp_path / f".{path.name}.{os.getpid()}.{0xBAD:08x}.tmp"
    planted.symlink_to(victim)
    write_deadline(path, 123.5)
    assert victim.read_text() == VICTIM and planted.is_symlink()
    assert read_deadline(path) == 123.5 and mode(path) == 0o600
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == [planted.name]  # ours were renamed, the planted one untouched
    monkeypatch.setattr("harmony.guard.temp_tag", lambda: 0xBAD)
    with pytest.raises(FileExistsError):  # every name planted: refuse, write nothing
        atomic_write(path, b"x")
    assert victim.read_text() == VICTIM and read_deadline(path) == 123.5


def test_journal_refuses_a_symlink_and_is_private(tmp_path: Path, victim: Path) -> None:
    planted = tmp_path / "planted.jsonl"
    planted.symlink_to(victim)
    event = JournalEvent(site="a", workload="w", kind="k", reason="r", mono=0.0, wall=0.0)
    with pytest.raises(OSError):
        append_event(planted, event)
    assert victim.read_text() == VICTIM
    path = tmp_path / "journal.jsonl"
    append_event(path, event)
    assert mode(path) == 0o600


def sleeper_workload(name: str) -> WorkloadConfig:
    return WorkloadConfig(
        name=name,
        strategy="absolute-consistency",
        driver=ProcessDriverConfig(command=[sys.executable, "-c", "import time; time.sleep(600)"]),
        topology=FailoverTopologyConfig(primary="a"),
    )


def site_config(data_dir: Path, workloads: list[WorkloadConfig]) -> SiteConfig:
    client, cluster, http = free_ports(3)
    nats = NatsConfig(client_port=client, cluster_port=cluster, http_port=http)
    return SiteConfig(
        mesh="private",
        site="a",
        data_dir=str(data_dir),
        nats=nats,
        workloads=workloads,
        source=str(data_dir.parent / "a.toml"),
    )


@pytest.fixture
def started() -> Iterator[list[Agent]]:
    agents: list[Agent] = []
    yield agents
    for agent in agents:
        agent.stop()


def test_agent_makes_its_data_dir_private(
    tmp_path: Path, started: list[Agent], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    data = tmp_path / "site-a"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)  # as an older agent (or a careless operator) left it
    agent = Agent(site_config(data, [sleeper_workload("ledger")]))
    started.append(agent)
    agent.start(connect_timeout=60)
    assert "tightened to 0700" in caplog.text and "0755" in caplog.text
    deadline = data / "tether" / "ledger"
    wait_until(lambda: list(deadline.glob("*.deadline")), 60, message="no deadline file")
    log = data / "workloads" / "ledger.log"
    wait_until(lambda: log.exists() and log.stat().st_size > 0, 30, message="no workload log")
    dirs = [data, data / "workloads", data / "tether" / "ledger", data / "nats"]
    files = [data / "journal.jsonl", log, *deadline.glob("*.deadline")]
    files += [data / "nats" / "nats-server.conf", data / "nats" / "nats-server.log"]
    assert {str(d): oct(mode(d)) for d in dirs} == {str(d): "0o700" for d in dirs}
    assert {str(f): oct(mode(f)) for f in files} == {str(f): "0o600" for f in files}


def chowned_dir(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("chowning a directory to another user needs root (CI runs as root)")
    data = tmp_path / "theirs"
    data.mkdir(mode=0o700)
    os.chown(data, 65534, 65534)
    return data


def test_data_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    data = chowned_dir(tmp_path)
    agent = Agent(site_config(data, []))
    try:
        with pytest.raises(ConfigError) as err:
            agent.start(connect_timeout=10)
    finally:
        agent.stop()
    assert err.value.field == "data_dir" and err.value.file.endswith("a.toml")
    assert "owned by uid 65534" in err.value.reason
    assert agent.server is None  # refused before anything started
    assert list(data.iterdir()) == []


def test_cli_agent_refuses_a_data_dir_of_another_user(tmp_path: Path) -> None:
    data = chowned_dir(tmp_path)
    client, cluster, http = free_ports(3)
    conf = tmp_path / "a.toml"
    conf.write_text(
        f'mesh = "private"\nsite = "a"\ndata_dir = "{data}"\n[nats]\n'
        f"client_port = {client}\ncluster_port = {cluster}\nhttp_port = {http}\n"
    )
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "harmony.cli", "agent", "--config", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert f"{conf}: data_dir: {data} is owned by uid 65534" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and time.monotonic() - started < 60
    assert list(data.iterdir()) == []


def test_journal_file_is_private(tmp_path: Path) -> None:
    class Clock:
        def monotonic(self) -> float:
            return 0.0

        def wall(self) -> float:
            return 0.0

    old = tmp_path / "old" / "journal.jsonl"  # as an older agent left it: 0644
    old.parent.mkdir()
    old.write_text("")
    os.chmod(old, 0o644)
    for path in (tmp_path / "d" / "journal.jsonl", old):
        j = Journal(path, Clock(), "a", "m", "inc", None)  # type: ignore[arg-type]
        try:
            j.record("", "k", "r")
        finally:
            j.close()
        assert mode(path) == 0o600 and mode(path.parent) == 0o700
