"""Prices (pure parts): what a price hook may print, the bounded value a site writes to the
prices bucket, whose latest move a runner reads, and who may write which key."""

from __future__ import annotations

import pytest

from harmony.actors.price import hook_timeout, parse_price
from harmony.mesh import prices
from harmony.mesh.prices import CostMove, Prices, SitePrice
from harmony.security.permissions import identity_permissions, site_permissions


@pytest.mark.parametrize(
    ("output", "expected"),
    [("3\n", 3.0), (" 0.25 ", 0.25), ("0", 0.0), ("1e3", 1000.0)],
)
def test_a_hook_prints_one_number(output: str, expected: float) -> None:
    assert parse_price(output) == expected


@pytest.mark.parametrize(
    ("output", "why"),
    [
        ("", "printed nothing"),
        ("cheap\n", "not a number"),
        ("3 4", "not a number"),
        ("-1", "from 0 to"),
        ("nan", "from 0 to"),
        ("inf", "from 0 to"),
        ("1e13", "from 0 to"),
        ("\x1b[31m3", "not a number"),
    ],
)
def test_anything_else_is_garbage_with_a_reason(output: str, why: str) -> None:
    got = parse_price(output)
    assert isinstance(got, str) and why in got, got
    assert "\x1b" not in got  # an operator's terminal never sees a hook's escape codes


def test_a_hook_is_killed_within_its_interval_and_never_later_than_ten_seconds() -> None:
    assert hook_timeout(0.5) == 0.5
    assert hook_timeout(600) == 10.0


def test_a_value_is_a_price_of_its_own_key_and_bounded() -> None:
    good = SitePrice("a", 3.0, 100.0, {"ledger": CostMove("b", 99.0)})
    assert prices.decode(prices.encode(good), "a") == good
    assert prices.decode(prices.encode(good), "b") is None  # another site's key
    assert prices.decode(b"\xc1garbage", "a") is None
    assert prices.decode(b"x" * (prices.MAX_VALUE_BYTES + 1)) is None
    for bad in (-1.0, 1e13):
        raw = prices.encode(SitePrice("a", bad, 100.0))
        assert prices.decode(raw, "a") is None
    unpriced = SitePrice("a", None, 100.0)
    assert prices.decode(prices.encode(unpriced), "a") == unpriced


def test_the_latest_move_of_a_workload_is_read_from_every_site() -> None:
    found = Prices(
        {
            "a": (SitePrice("a", 3.0, 10.0, {"ledger": CostMove("b", 50.0)}), 0.1),
            "b": (SitePrice("b", 1.0, 10.0, {"ledger": CostMove("c", 70.0, cost=False)}), 0.1),
            "c": (SitePrice("c", None, 10.0), 0.1),
        }
    )
    assert found.price("a") == 3.0 and found.price("c") is None and found.price("x") is None
    last = found.last_move("ledger")
    assert last is not None and last.target == "c" and not last.cost
    assert found.last_move("web") is None


def can_pub(publish: tuple[str, ...], subject: str) -> bool:
    def covers(pattern: str) -> bool:
        p, s = pattern.split("."), subject.split(".")
        for i, tok in enumerate(p):
            if tok == ">":
                return len(s) > i
            if i >= len(s) or (tok != "*" and tok != s[i]):
                return False
        return len(p) == len(s)

    return any(covers(p) for p in publish)


def test_a_site_writes_its_own_price_only_and_reads_them_all() -> None:
    a = site_permissions("m", "a", "UA", [])
    stream = "KV_harmony-m-prices"
    assert can_pub(a.publish, "$KV.harmony-m-prices.a")
    assert not can_pub(a.publish, "$KV.harmony-m-prices.b")
    assert not can_pub(a.publish, "$KV.harmony-m-prices.>")
    for ok in (
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.CREATE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.x.$KV.harmony-m-prices.>",
        f"$JS.API.CONSUMER.DELETE.{stream}.x",
        f"$JS.FC.{stream}.x.y",
    ):
        assert can_pub(a.publish, ok), ok
    for bad in (
        f"$JS.API.STREAM.DELETE.{stream}",
        f"$JS.API.STREAM.PURGE.{stream}",
        f"$JS.API.STREAM.UPDATE.{stream}",
        f"$JS.API.STREAM.MSG.DELETE.{stream}",
    ):
        assert not can_pub(a.publish, bad), bad
    # An operator sees the prices in the cost actors' snapshots, not in the bucket.
    for role in ("operator", "reader"):
        u = identity_permissions("m", "x", "UX", role)
        assert not any("prices" in p for p in u.publish), role
