"""The wire codec: tagged union, schema version, tell frames."""

from __future__ import annotations

import msgspec
import pytest

from harmony.actors.messages import Heartbeat, Notice, Ping, Pong
from harmony.mesh import subjects, wire


def test_round_trip_of_every_kind_of_message() -> None:
    hb = Heartbeat(mesh="m", site="a", seq=3, incarnation="x", mono=1.5, wall=2.5, interval=0.5)
    for msg in (Ping(text="hi"), Pong(text="hi", site="a"), hb, wire.Ack()):
        assert wire.decode(wire.encode(msg)) == msg


def test_tell_frames_hold_many_messages() -> None:
    for n in (0, 1, 15, 16, 70000):
        msgs = [Notice(text=str(i)) for i in range(n)]
        frame = wire.frame_tells([wire.encode(m) for m in msgs])
        assert wire.decode_many(frame) == msgs


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"\xc1", "malformed"),
        (msgspec.msgpack.encode({"t": "Nope"}), "Invalid value 'Nope'"),
        (msgspec.msgpack.encode({"t": "Ping", "text": 1}), "Expected `str`"),
        (msgspec.msgpack.encode({"t": "Ping", "v": 2}), "unsupported schema version 2"),
        (msgspec.msgpack.encode({"text": "no tag"}), "missing required field `t`"),
    ],
)
def test_bad_payloads_are_wire_errors(payload: bytes, needle: str) -> None:
    with pytest.raises(wire.WireError, match=needle):
        wire.decode(payload)


def test_new_message_types_join_the_union() -> None:
    class LateMessage(wire.Message):
        n: int

    assert wire.decode(wire.encode(LateMessage(n=4))) == LateMessage(n=4)


def test_subject_scheme() -> None:
    s = subjects.actor("prod", "paris", subjects.ASK, "agent/workload/web/lease")
    assert s == "harmony.prod.paris.ask.agent.workload.web.lease"
    assert subjects.actor_path(s) == "agent/workload/web/lease"
    with pytest.raises(ValueError):
        subjects.actor_path("harmony.prod.paris.hb")
