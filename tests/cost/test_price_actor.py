"""The PriceActor runs a real price hook (no mesh): a good price is kept; a hook that fails,
times out or prints garbage keeps the last good price, and the journal says why, once per
new reason; the actor never dies of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.actors import Kit, journaled, make_kit

from harmony.actors.journal import read_journal
from harmony.actors.price import PRICE_PATH, PriceActor, RunPriceHook
from harmony.config import PriceConfig


@pytest.fixture
def hook(tmp_path: Path) -> Path:
    return tmp_path / "spot-price"


@pytest.fixture
def kit(tmp_path: Path, hook: Path) -> Iterator[Kit]:
    price = PriceConfig(hook=str(hook), interval=0.5)  # also the hook's timeout
    with journaled(make_kit(), tmp_path, price=price) as k:
        yield k


def says(hook: Path, body: str) -> None:
    hook.write_text(f"#!/bin/sh\n{body}\n")
    hook.chmod(0o755)


def test_a_bad_hook_keeps_the_last_good_price_and_says_why_once(
    kit: Kit, hook: Path, tmp_path: Path
) -> None:
    says(hook, "echo 0.25")
    ref = PriceActor.start(kit.ctx, PRICE_PATH, None)
    ref.ask(RunPriceHook())
    info = kit.ctx.board.get(PRICE_PATH)
    assert info is not None and info.detail["price"] == "0.25"
    for body, why in (
        ("echo cheap", "printed 'cheap', not a number"),
        ("exit 3", "exited with code 3"),
        ("sleep 5", "timed out after 0.5 s"),
    ):
        says(hook, body)
        ref.ask(RunPriceHook())
        ref.ask(RunPriceHook())  # the same reason again: journaled once
        info = kit.ctx.board.get(PRICE_PATH)
        assert info is not None and info.detail["price"] == "0.25", body
        assert why in info.detail["hook_error"], info.detail
    failed = [
        e.reason for e in read_journal(tmp_path / "journal.jsonl") if e.kind == "price-hook-failed"
    ]
    assert len(failed) == 3, failed
    assert all(r.endswith("the price stays 0.25") for r in failed), failed
    says(hook, "echo 0.5")
    ref.ask(RunPriceHook())
    info = kit.ctx.board.get(PRICE_PATH)
    assert info is not None and info.detail == {**info.detail, "price": "0.5", "hook_error": ""}
    kinds = [e.kind for e in read_journal(tmp_path / "journal.jsonl")]
    assert "price-hook-ok" in kinds
