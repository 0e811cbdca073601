"""The wire: every message on a NATS subject is a msgspec Struct in one tagged union.

Any subclass of `Message` joins the union when its class is created, so the actors layer can
define its own messages without this module importing it. Decoding validates the type, the
fields and the schema version; anything else is a `WireError`, never an exception that
reaches an actor.

Strings from the wire reach drivers (env, argv), the journal and terminals, so a message is
malformed when a name, reason or text in it holds a control character (`Text`); tokens must
be positive 63-bit integers (`Token`). Text that is only shown (replies, journal events) is
made `printable` instead, so one stray byte never hides a whole reply.

Framing: an *ask* payload is one message; a *tell* payload is a msgpack array of messages, so
that tells queued together travel as one NATS message (see `frame_tells`).
"""

from __future__ import annotations

import re
import threading
from typing import Annotated, Any, Union

import msgspec

SCHEMA_VERSION = 1

_CONTROL = r"\x00-\x1f\x7f-\x9f"
"""C0 (NUL, ESC, newline, tab...), DEL and C1 (0x9b is CSI on some terminals)."""
_CONTROL_RE = re.compile(f"[{_CONTROL}]")

_TEXT_PATTERN = rf"\A[^{_CONTROL}]*\Z"
Text = Annotated[str, msgspec.Meta(pattern=_TEXT_PATTERN)]
"""A string without control characters; anything else makes the message malformed. (A NUL in
a stop reason crashed the hooks driver's run actor, whose restart released the lease.)"""

Token = Annotated[int, msgspec.Meta(gt=0, le=2**63 - 1)]
"""A fencing token (a KV revision): positive, and fits the int64 that resources store."""


def printable(text: str) -> str:
    """`text` for display: tabs expanded, every other control character shown as an escape."""
    if not _CONTROL_RE.search(text):
        return text
    return _CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", text.expandtabs(4))


class WireError(Exception):
    """A payload that is not a valid message of this schema version."""


class Message(msgspec.Struct, tag_field="t", tag=True, kw_only=True):
    """Base of every message that may cross the wire. The tag is the class name."""

    v: int = SCHEMA_VERSION

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_codec" in globals():  # the module's own classes come before the codec
            _codec.invalidate()


def message_types() -> dict[str, type[Message]]:
    """Every defined message type by wire tag; two types may not share a tag."""
    found: dict[str, type[Message]] = {}
    stack = list(Message.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        tag = cls.__struct_config__.tag
        assert isinstance(tag, str)
        if tag in found and found[tag] is not cls:
            raise TypeError(f"wire tag {tag!r} used by both {found[tag]} and {cls}")
        found[tag] = cls
    return found


class Ack(Message):
    """The reply to an ask whose handler returned nothing."""


class ErrorReply(Message):
    """The reply to an ask that failed; `code` is one of the ERR_* constants."""

    code: Text
    reason: str

    def __post_init__(self) -> None:
        self.reason = printable(self.reason)


ERR_MALFORMED = "malformed"
ERR_UNKNOWN_ACTOR = "unknown-actor"
ERR_HANDLER = "handler-error"
ERR_UNHANDLED = "unhandled-message"


class _Codec:
    """Decoders for the current union, rebuilt when a new message type is defined."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._one: msgspec.msgpack.Decoder[Any] | None = None
        self._many: msgspec.msgpack.Decoder[Any] | None = None
        self.encoder = msgspec.msgpack.Encoder()

    def invalidate(self) -> None:
        with self._lock:
            self._one = self._many = None

    def decoders(self) -> tuple[msgspec.msgpack.Decoder[Any], msgspec.msgpack.Decoder[Any]]:
        one, many = self._one, self._many
        if one is None or many is None:
            with self._lock:
                union = Union[tuple(message_types().values())]  # type: ignore[valid-type]  # noqa: UP007
                one = self._one = msgspec.msgpack.Decoder(union)
                many = self._many = msgspec.msgpack.Decoder(list[union])  # type: ignore[valid-type]
        return one, many


_codec = _Codec()


def encode(msg: Message) -> bytes:
    return _codec.encoder.encode(msg)


def _explain(e: msgspec.DecodeError) -> str:
    """msgspec names the regex; people want to hear what was wrong with the string."""
    return str(e).replace(
        f"Expected `str` matching regex {_TEXT_PATTERN!r}",
        "a control character (C0, DEL or C1) in a string",
    )


def _check_version(msg: Message) -> Message:
    if msg.v != SCHEMA_VERSION:
        raise WireError(f"unsupported schema version {msg.v} (this side speaks {SCHEMA_VERSION})")
    return msg


def decode(data: bytes) -> Message:
    """Decode one message (an ask or a reply)."""
    try:
        msg = _codec.decoders()[0].decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise WireError(_explain(e)) from None
    return _check_version(msg)


def decode_many(data: bytes) -> list[Message]:
    """Decode a tell frame: an array of messages."""
    try:
        msgs = _codec.decoders()[1].decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise WireError(_explain(e)) from None
    for m in msgs:
        _check_version(m)
    return list(msgs)


def array_header(n: int) -> bytes:
    """msgpack array header for n items: frames pre-encoded messages without re-encoding."""
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def frame_tells(encoded: list[bytes]) -> bytes:
    return array_header(len(encoded)) + b"".join(encoded)
