"""The CostActor on real Pykka actors without a mesh: bucket reads are handed to it as
`PricesRead`, time is a fake clock, its parent and the price actor record what they get.
Only the site running the copy acts; it waits for every price before placing; a runner the
latest move names is placed (and holds before a cost move); a refused move is journaled."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.actors import Kit, journaled, make_kit
from support.waiting import wait_until

from harmony.actors import messages as m
from harmony.actors.base import HarmonyActor, handles
from harmony.actors.cost import SETTLE, CostActor, PricesRead
from harmony.actors.journal import read_journal
from harmony.actors.price import PRICE_PATH, RecordMove
from harmony.config import CostTopologyConfig, ProcessDriverConfig, WorkloadConfig
from harmony.mesh.prices import CostMove, Prices, SitePrice

WORKLOAD = WorkloadConfig(
    name="ledger",
    driver=ProcessDriverConfig(command=["sleep", "600"]),
    topology=CostTopologyConfig(sites=["a", "b", "c"], min_saving=1.0, hold=10.0, cooldown=60),
)


class Parent(HarmonyActor):
    """Stands in for the workload supervisor: records moves, accepts them unless told."""

    kind = "parent"
    refuse = ""

    def started(self) -> None:
        self.moves: list[m.MoveWorkload] = []

    @handles(m.MoveWorkload)
    def on_move(self, msg: m.MoveWorkload) -> m.CommandResult:
        self.moves.append(msg)
        return m.CommandResult(ok=not self.refuse, detail=self.refuse or "moving")


class Price(HarmonyActor):
    kind = "price"

    def started(self) -> None:
        self.recorded: list[RecordMove] = []

    @handles(RecordMove)
    def on_record(self, msg: RecordMove) -> None:
        self.recorded.append(msg)


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    with journaled(make_kit(), tmp_path, workloads=[WORKLOAD]) as k:
        now = k.clock.now
        peers = {s: m.PeerInfo(site=s, state="alive", last_heartbeat_age=0.1) for s in "bc"}
        k.ctx.peer_view.publish(peers, now)
        yield k


def found(moves: dict[str, CostMove] | None = None, **prices: float | None) -> Prices:
    moves = moves or {}
    return Prices(
        {
            s: (SitePrice(s, p, 0.0, {"ledger": moves[s]} if s in moves else {}), 0.1)
            for s, p in prices.items()
        }
    )


def start(kit: Kit) -> tuple[object, Parent, Price]:
    parent = Parent.start(kit.ctx, "agent/workload/ledger", None)
    price = Price.start(kit.ctx, PRICE_PATH, None)
    cost = CostActor.start(kit.ctx, "agent/workload/ledger/cost", parent, WORKLOAD)
    return cost, parent.proxy()._actor, price.proxy()._actor  # type: ignore[attr-defined]


def running(kit: Kit) -> None:
    kit.ctx.copies.set("ledger", m.CopyInfo(started_wall=1.0))


def kinds(tmp_path: Path, kind: str) -> list[str]:
    return [e.reason for e in read_journal(tmp_path / "journal.jsonl") if e.kind == kind]


def test_a_site_not_running_the_copy_only_shows_the_prices(kit: Kit) -> None:
    cost, parent, _ = start(kit)
    cost.ask(PricesRead(found(a=5.0, b=2.0, c=4.0)))  # type: ignore[attr-defined]
    info = kit.ctx.board.get("agent/workload/ledger/cost")
    assert info is not None and info.state == "idle"
    assert info.detail["prices"] == "a=5 b=2 c=4"
    assert parent.moves == []


def test_the_runner_waits_for_every_price_then_places_it_on_the_cheapest(
    kit: Kit, tmp_path: Path
) -> None:
    cost, parent, price = start(kit)
    running(kit)
    cost.ask(PricesRead(found(a=5.0, b=2.0)))  # type: ignore[attr-defined]
    assert parent.moves == []  # c's price is not in yet
    cost.ask(PricesRead(found(a=5.0, b=2.0, c=4.0)))  # type: ignore[attr-defined]
    [move] = parent.moves
    assert move.target == "b" and move.reason.startswith("cost: not placed yet")
    wait_until(lambda: price.recorded == [RecordMove("ledger", "b", False)], 5)  # a tell
    assert kinds(tmp_path, "cost-move")[0].startswith("not placed yet")
    cost.ask(PricesRead(found(a=5.0, b=2.0, c=4.0)))  # type: ignore[attr-defined]
    assert len(parent.moves) == 1  # under way: not asked again


def test_after_settle_it_places_on_what_is_known(kit: Kit) -> None:
    cost, parent, _ = start(kit)
    running(kit)
    kit.clock.now += SETTLE
    cost.ask(PricesRead(found(a=5.0, b=2.0)))  # type: ignore[attr-defined]
    assert [mv.target for mv in parent.moves] == ["b"]


def test_a_runner_placed_by_a_move_holds_before_the_next_and_records_it(kit: Kit) -> None:
    cost, parent, price = start(kit)
    running(kit)
    placed = {"b": CostMove("a", kit.clock.wall() - 100.0, cost=True)}
    cost.ask(PricesRead(found(placed, a=5.0, b=2.0, c=4.0)))  # type: ignore[attr-defined]
    assert parent.moves == []  # placed here: b must save for `hold` first
    info = kit.ctx.board.get("agent/workload/ledger/cost")
    assert info is not None and info.detail["decision"] == "wait"
    kit.clock.now += 10.0
    cost.ask(PricesRead(found(placed, a=5.0, b=2.0, c=4.0)))  # type: ignore[attr-defined]
    [move] = parent.moves
    assert move.target == "b" and "saving held long enough" in move.reason
    wait_until(lambda: price.recorded == [RecordMove("ledger", "b", True)], 5)


def test_a_refused_move_is_journaled_and_the_workload_stays(kit: Kit, tmp_path: Path) -> None:
    cost, parent, _ = start(kit)
    parent.refuse = "move to b refused: outside the constraints"
    running(kit)
    cost.ask(PricesRead(found(a=5.0, b=2.0, c=4.0)))  # type: ignore[attr-defined]
    assert kinds(tmp_path, "cost-move-refused") == [parent.refuse]
    cost.ask(PricesRead(found(a=5.0, b=2.0, c=4.0)))  # type: ignore[attr-defined]
    assert len(parent.moves) == 1  # placed here now: not asked again at every read


def test_a_failed_read_decides_nothing(kit: Kit) -> None:
    cost, parent, _ = start(kit)
    running(kit)
    cost.ask(PricesRead(None, "no responders"))  # type: ignore[attr-defined]
    info = kit.ctx.board.get("agent/workload/ledger/cost")
    assert info is not None and "cannot read the prices: no responders" in info.detail["why"]
    assert parent.moves == []


def test_a_copy_that_left_and_came_back_between_two_reads_is_decided_afresh(kit: Kit) -> None:
    """This site moved the copy away (a move under way), and it came back before any read
    saw it gone (an idle site reads every 5 s). The old move is done: the new copy is
    decided for at once, not after MOVE_TIMEOUT (a CI run's cost scenario waited 90 s)."""
    cost, parent, _ = start(kit)
    running(kit)
    cost.ask(PricesRead(found(a=5.0, b=2.0, c=4.0)))  # type: ignore[attr-defined]
    assert [mv.target for mv in parent.moves] == ["b"]  # under way
    kit.clock.now += 20.0
    kit.ctx.copies.set("ledger", m.CopyInfo(started_wall=2.0))  # gone and back: a new copy
    # No move names this site: it came back by failover, so it goes to the cheapest at once.
    cost.ask(PricesRead(found(a=5.0, b=2.0, c=4.0)))  # type: ignore[attr-defined]
    assert [mv.target for mv in parent.moves] == ["b", "b"]
