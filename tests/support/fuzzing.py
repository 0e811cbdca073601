"""Mutated frames for the wire, and the reason an agent must count each one under.

`mutate` makes one hostile frame from a valid one: bit flips, truncation, invalid UTF-8 in a
string, a field of the wrong type, a random struct of junk, control characters, deep nesting,
random bytes, an oversized frame. `expect_actor` / `expect_heartbeat` say what the agent does
with it, by the rules the bridge and PeerWatch follow (the export policy is the agent's own,
built from its config file): the reason it is refused under, or None if it is accepted.
`harmful` frames (accepted commands that would move or stop a workload) are never sent.
Used by tests/security/test_fuzz_wire.py and bench/fuzz.py.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import msgspec

import harmony.actors.messages as m
from harmony.actors.exports import ExportPolicy
from harmony.mesh import wire
from harmony.mesh.remote import Refused

MESH_NAME = "fuzz"

HARMFUL = (m.StartWorkload, m.StopWorkload, m.FenceWorkload, m.MoveWorkload, m.DrainSite)


def seeds(mesh: str = MESH_NAME, known: str = "b") -> list[wire.Message]:
    """Valid messages of every kind the wire carries, to start mutations from."""
    return [
        m.Ping(text="hello"),
        m.Notice(text="a note", sender=known),
        m.GetNotices(),
        m.ProbePeer(target="nowhere", timeout=0.2),
        m.SendNotice(target="nowhere", text="hi"),
        m.GetOutput(lines=5),
        m.StopWorkload(reason="fuzz"),
        m.FenceWorkload(reason="fuzz"),
        m.StartWorkload(token=5, reason="fuzz"),
        m.MoveWorkload(target=known, reason="fuzz"),
        m.DrainSite(reason="fuzz"),
        heartbeat(mesh, known),
        m.Pong(text="x", site=known),
        wire.ErrorReply(code="x", reason="y"),
    ]


def heartbeat(mesh: str, site: str, **fields: Any) -> m.Heartbeat:
    base: dict[str, Any] = {
        "mesh": mesh,
        "site": site,
        "seq": 1,
        "incarnation": "fuzz",
        "mono": 1.0,
        "wall": 1.0,
        "interval": 0.5,
    }
    return m.Heartbeat(**(base | fields))


def _junk(rng: random.Random, depth: int = 0) -> Any:
    kinds: list[Callable[[], Any]] = [
        lambda: rng.randrange(-(2**63), 2**64),
        lambda: rng.random() * 10 ** rng.randrange(-5, 40),
        lambda: float(rng.choice(["nan", "inf", "-inf"])),
        lambda: None,
        lambda: rng.random() < 0.5,
        lambda: rng.randbytes(rng.randrange(0, 40)),
        lambda: "".join(chr(rng.randrange(0, 0x250)) for _ in range(rng.randrange(0, 30))),
        lambda: "x" * rng.choice([1025, 5000, 70]),
    ]
    if depth < 3:
        kinds.append(lambda: [_junk(rng, depth + 1) for _ in range(rng.randrange(0, 4))])
        kinds.append(lambda: {str(i): _junk(rng, depth + 1) for i in range(rng.randrange(0, 4))})
    return rng.choice(kinds)()


def _bad_utf8(rng: random.Random, msg: wire.Message) -> bytes:
    data = msgspec.to_builtins(msg)
    fields = [k for k, v in data.items() if isinstance(v, str) and k != "t"] or ["t"]
    data[rng.choice(fields)] = "QQQQ"
    raw = msgspec.msgpack.encode(data)
    bad = rng.choice([b"\xff\xfe\xfd\xfc", b"\xc3\x28QQ", b"Q\xed\xa0\x80", b"\xf8\x88\x80\x80"])
    return raw.replace(b"\xa4QQQQ", b"\xa4" + bad, 1)


def mutate(rng: random.Random, msg: wire.Message) -> bytes:
    """One hostile frame made from `msg` (an ask payload; frame it for a tell yourself)."""
    raw = wire.encode(msg)
    how = rng.randrange(10)
    if how == 0:  # bit flips
        b = bytearray(raw)
        for _ in range(rng.randrange(1, 6)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b)
    if how == 1:  # truncation
        return raw[: rng.randrange(len(raw))]
    if how == 2:
        return _bad_utf8(rng, msg)
    if how == 3:  # a field of the wrong type
        data = msgspec.to_builtins(msg)
        data[rng.choice(list(data))] = _junk(rng)
        return msgspec.msgpack.encode(data)
    if how == 4:  # a random struct of junk, of any type
        tag = rng.choice(list(wire.message_types()))
        fields = {f"f{i}": _junk(rng) for i in range(rng.randrange(0, 4))}
        return msgspec.msgpack.encode({"t": tag, "v": 1, **fields})
    if how == 5:  # control characters in every string
        data = msgspec.to_builtins(msg)
        for k, v in data.items():
            if isinstance(v, str) and k != "t":
                data[k] = v + chr(rng.choice([0, 7, 10, 27, 127, 0x85, 0x9B]))
        return msgspec.msgpack.encode(data)
    if how == 6:  # deep nesting
        depth = rng.choice([10, 200, 5000])
        return b"\x91" * depth + b"\xc0"
    if how == 7:  # random bytes
        return rng.randbytes(rng.randrange(0, 64))
    if how == 8:  # a future schema, or none
        data = msgspec.to_builtins(msg)
        data["v"] = rng.choice([0, 2, 99, "1", None])
        return msgspec.msgpack.encode(data)
    return raw  # unchanged: a valid message (still must be allowed, or refused, by the rules)


def oversized(msg: wire.Message) -> bytes:
    return wire.encode(msg) + b"\0" * (wire.MAX_FRAME_BYTES + 1)


def harmful(frame: bytes, many: bool) -> bool:
    """Would this frame, accepted, move or stop a workload? Then the fuzzer does not send it."""
    try:
        msgs = wire.decode_many(frame) if many else [wire.decode(frame)]
    except wire.WireError:
        return False
    return any(isinstance(x, HARMFUL) for x in msgs)


def expect_actor(
    policy: ExportPolicy, sender: str, path: str, frame: bytes, many: bool
) -> str | None:
    """The reason the bridge counts this ask (many=False) or tell frame under; None: admitted.
    The sender and path are chosen by the fuzzer: known senders, live actors, within rate."""
    if len(frame) > wire.MAX_FRAME_BYTES:
        return wire.ERR_TOO_LARGE
    kind = policy.sender_kind(sender) if sender != policy.site else None
    if kind is None:
        return wire.ERR_UNKNOWN_SENDER
    if not policy.exported(kind, path):
        return wire.ERR_NOT_EXPORTED
    try:
        msgs = wire.decode_many(frame) if many else [wire.decode(frame)]
    except wire.WireError:
        return wire.ERR_MALFORMED
    try:
        for x in msgs:
            policy.admit(sender, kind, path, x)
    except Refused as e:
        return e.code
    return None


def expect_heartbeat(
    mesh: str, known: frozenset[str], subject_site: str, frame: bytes
) -> str | None:
    """The reason PeerWatch counts a heartbeat frame under (None: accepted). `subject_site` is
    never the agent's own; unknown sites' witness heartbeats without copies are accepted
    (learned), so the fuzzer sends those from one unknown name only."""
    if len(frame) > wire.MAX_FRAME_BYTES:
        return wire.ERR_TOO_LARGE
    try:
        hb = wire.decode(frame)
    except wire.WireError:
        return wire.ERR_MALFORMED
    if not isinstance(hb, m.Heartbeat):
        return wire.ERR_MALFORMED
    if hb.site != subject_site or hb.mesh != mesh:
        return wire.ERR_SUBJECT_MISMATCH
    if subject_site not in known and not (hb.witness and not hb.copies):
        return wire.ERR_UNKNOWN_SENDER
    return None
