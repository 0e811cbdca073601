"""The outbox on its own (pure logic, no NATS): order, tell framing, limits, when to wake.

The connection tests (test_connection.py) drive it through a real nats-server; these pin
down what the loop gets out of it, which they can only see from the far side.
"""

from __future__ import annotations

import logging

import pytest
from nats.protocol.command import pub_cmd

from harmony.mesh import wire
from harmony.mesh.outbox import MAX_FRAME_ITEMS, Outbox


class OutboxTestSeq(wire.Message):
    """A numbered message (test only)."""

    n: int
    pad: str = ""


def tell(ob: Outbox, subject: str, n: int, pad: str = "") -> None:
    ob.put(subject, "", wire.encode(OutboxTestSeq(n=n, pad=pad)), True)


def numbers(frame: bytes) -> list[int]:
    msgs = wire.decode_many(frame)
    assert all(isinstance(m, OutboxTestSeq) for m in msgs)
    return [m.n for m in msgs if isinstance(m, OutboxTestSeq)]


def test_only_the_first_put_after_a_take_asks_for_a_wake_up() -> None:
    ob = Outbox()
    assert ob.put("a", "", b"1", False)
    assert not ob.put("a", "", b"2", False)
    assert ob.busy
    ob.kicked = False  # what the loop does when it takes the outbox
    assert ob.put("a", "", b"3", False)


def test_runs_of_tells_to_one_subject_leave_as_one_frame_in_order() -> None:
    ob = Outbox()
    for n in range(3):
        tell(ob, "t.x", n)
    ob.put("p.y", "inbox.1", b"ask", False)
    tell(ob, "t.x", 3)
    tell(ob, "t.z", 4)
    tell(ob, "t.x", 5)
    out = ob.take_all(1 << 20)
    assert [(s, r) for s, r, _ in out] == [
        ("t.x", ""),
        ("p.y", "inbox.1"),
        ("t.x", ""),
        ("t.z", ""),
        ("t.x", ""),
    ]
    assert numbers(out[0][2]) == [0, 1, 2]
    assert out[1][2] == b"ask"  # a plain publish is sent as it came
    assert [numbers(p) for _, _, p in out[2:]] == [[3], [4], [5]]
    assert not ob.items and not ob.busy


def test_frames_stay_within_the_payload_limit_and_the_item_limit() -> None:
    ob = Outbox()
    for n in range(200):
        tell(ob, "t.big", n, pad="y" * 1000)
    out = ob.take_all(20_000)
    assert all(len(p) <= 20_000 for _, _, p in out)
    assert [n for _, _, p in out for n in numbers(p)] == list(range(200))
    for n in range(MAX_FRAME_ITEMS + 1):
        tell(ob, "t.many", n)
    frames = [numbers(p) for _, _, p in ob.take_all(1 << 20)]
    assert [len(f) for f in frames] == [MAX_FRAME_ITEMS, 1]


def test_commands_for_the_loop_drop_what_the_server_would_refuse(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ob = Outbox()
    ob.put("big", "", b"x" * 101, False)
    ob.put("small", "r", b"ok", False)
    with caplog.at_level(logging.WARNING):
        cmds = ob.take_commands(100)
    assert cmds == [pub_cmd("small", "r", b"ok")]
    assert "publish to big dropped" in caplog.text
