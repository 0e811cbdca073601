"""AgentSupervisor (`agent`), the root of one agent's tree: it starts the site, the peer
watch and one supervisor per workload placed on this site; it passes peer news on to the
workloads and answers the operator's drain."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pykka
import pytest
from support.actors import Kit, journaled, make_kit
from support.processes import pid_alive
from support.waiting import wait_until

from harmony.actors.agent import ROOT_PATH, AgentSupervisor
from harmony.actors.journal import read_journal
from harmony.actors.messages import CommandResult, CopyInfo, DrainSite
from harmony.actors.peers import PeerChanged, PeerCopies
from harmony.actors.workload_supervisor import Drain
from harmony.config import FailoverTopologyConfig, ProcessDriverConfig, Timings, WorkloadConfig


def sba(name: str, primary: str, standbys: list[str]) -> WorkloadConfig:
    return WorkloadConfig(
        name=name,
        driver=ProcessDriverConfig(command=["sleep", "600"]),
        topology=FailoverTopologyConfig(primary=primary, standbys=standbys),
        strategy="split-brain-allowed",
    )


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    """Site a on a test clock (no timer fires on its own): here a standby of `here`, and
    not a site of `elsewhere`."""
    k = make_kit(timings=Timings(heartbeat_interval=3600))
    workloads = [sba("here", "b", ["a"]), sba("elsewhere", "b", ["c"])]
    with journaled(k, tmp_path, workloads=workloads):
        yield k


def journal(kit: Kit) -> list[tuple[str, str]]:
    assert kit.ctx.journal is not None
    return [(e.workload, e.kind) for e in read_journal(kit.ctx.journal.path)]


def start(kit: Kit) -> pykka.ActorRef[AgentSupervisor]:
    root = AgentSupervisor.start(kit.ctx, ROOT_PATH, None)
    wait_until(lambda: kit.ctx.directory.get("agent/workload/here/run"), 10)
    return root


def test_the_tree_has_the_site_the_peers_and_the_workloads_placed_here(kit: Kit) -> None:
    start(kit)
    paths = {line.path for line in kit.ctx.board.lines()}
    assert {
        "agent",
        "agent/site",
        "agent/peers",
        "agent/workload/here",
        "agent/workload/here/run",
    } <= paths
    assert not any("elsewhere" in p for p in paths)  # placed on other sites only
    root = kit.ctx.board.get("agent")
    assert root is not None and root.policy.startswith("one-for-one")


def test_peer_news_reaches_the_workloads(kit: Kit) -> None:
    root = start(kit)
    # `here` runs on b; a is its standby. b falls silent and the mesh's copies are seen:
    # the workload's strategy (which only hears of this through the root) starts a copy.
    root.tell(PeerChanged("b", "unknown", "silent", None))
    root.tell(PeerCopies("b", {}))
    pid = wait_until(
        lambda: (
            (line := kit.ctx.board.get("agent/workload/here/run"))
            and line.state == "running"
            and int(line.detail["pid"])
        ),
        15,
        message=lambda: f"no replacement copy: {journal(kit)}",
    )
    assert pid_alive(pid)
    assert ("", "peer-silent") in journal(kit)  # the root journals the change itself


def test_peer_news_reaches_only_the_workloads_it_concerns(tmp_path: Path) -> None:
    """A peer outside every topology changes: no workload hears of it (one flapping core
    would otherwise cost each workload a decision and two journal lines per flap), unless
    that peer announced a copy of it."""
    k = make_kit(timings=Timings(heartbeat_interval=3600))
    workloads = [sba("here", "b", ["a"]), sba("mine", "a", ["b"])]
    with journaled(k, tmp_path, workloads=workloads):
        root = AgentSupervisor.start(k.ctx, ROOT_PATH, None)
        wait_until(lambda: k.ctx.directory.get("agent/workload/mine/run"), 10)

        def backs() -> list[tuple[str, str]]:
            assert k.ctx.journal is not None
            events = read_journal(k.ctx.journal.path)
            return [(e.workload, e.reason.split()[0]) for e in events if e.kind == "peer-back"]

        # c is in no topology: its flap is told to no workload (told first: each
        # workload's mailbox is in order, so b's news below comes after it)
        root.tell(PeerChanged("c", "unknown", "silent", None))
        root.tell(PeerChanged("c", "silent", "alive", None))
        root.tell(PeerChanged("b", "unknown", "silent", None))
        root.tell(PeerChanged("b", "silent", "alive", None))
        wait_until(lambda: {("here", "b"), ("mine", "b")} <= set(backs()), 10, message=backs)
        assert not [w for w, site in backs() if site == "c"]
        assert ("", "peer-silent") in journal(k)  # the root journals every change

        # d announces a copy of `mine` (configurations that disagree): its news reaches
        # `mine`, and only `mine`
        root.tell(PeerCopies("d", {"mine": CopyInfo(started_wall=1.0)}))
        root.tell(PeerChanged("d", "unknown", "silent", None))
        root.tell(PeerChanged("d", "silent", "alive", None))
        wait_until(lambda: ("mine", "d") in backs(), 10, message=backs)
        root.tell(PeerChanged("b", "alive", "silent", None))
        root.tell(PeerChanged("b", "silent", "alive", None))
        wait_until(lambda: backs().count(("here", "b")) == 2, 10, message=backs)
        assert ("here", "d") not in backs()


def test_an_operator_drain_asks_every_workload_to_move(kit: Kit) -> None:
    root = start(kit)
    result = root.ask(DrainSite(reason="maintenance"), timeout=10)
    assert result == CommandResult(ok=True, detail="here: not running here")
    assert ("", "operator-drain") in journal(kit)


def test_a_drain_of_the_agent_answers_one_event_per_workload(kit: Kit) -> None:
    root = start(kit)
    events = root.ask(Drain(), timeout=10)
    assert len(events) == 1
    assert events[0].wait(10), "the workload never finished its shutdown"
