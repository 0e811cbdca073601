"""The wire: every message on a NATS subject is a msgspec Struct in one tagged union.

Any subclass of `Message` joins the union when its class is created, so the actors layer can
define its own messages without this module importing it. Decoding validates the type, the
fields and the schema version; anything else is a `WireError`, never an exception that
reaches an actor.

Strings from the wire reach drivers (env, argv), the journal and terminals, so a message is
malformed when a name, reason or text in it holds a control character or is too long (`Text`,
`Name`); tokens must be positive 63-bit integers (`Token`); numbers are finite and bounded
(`Finite`, `Count`). Text that is only shown (replies) is made `printable` and cut to
`SHOWN_MAX` instead (`Shown`), so one stray byte never hides a whole reply. A payload bigger
than `MAX_FRAME_BYTES` is refused before it is decoded.

Framing: an *ask* payload is one message; a *tell* payload is a msgpack array of messages, so
that tells queued together travel as one NATS message (see `frame_tells`).
"""

from __future__ import annotations

import re
import threading
from typing import Annotated, Any, Union

import msgspec

from harmony.strategies.labels import (
    DIGEST_CHARS,
    LABEL_KEY_PATTERN,
    LABEL_VALUE_PATTERN,
    MAX_LABELS,
)

SCHEMA_VERSION = 1

_CONTROL = r"\x00-\x1f\x7f-\x9f"
"""C0 (NUL, ESC, newline, tab...), DEL and C1 (0x9b is CSI on some terminals)."""
_CONTROL_RE = re.compile(f"[{_CONTROL}]")

Token = Annotated[int, msgspec.Meta(gt=0, le=2**63 - 1)]
"""A fencing token (a KV revision): positive, and fits the int64 that resources store."""

TEXT_MAX = 1024
"""Reasons and notes: a person's sentence, never a document."""
SHOWN_MAX = 4096
"""Display-only strings (an output line, an error): longer ones are cut by their sender."""

_TEXT_PATTERN = rf"\A[^{_CONTROL}]{{0,{TEXT_MAX}}}\Z"
Text = Annotated[str, msgspec.Meta(pattern=_TEXT_PATTERN)]
"""A string without control characters, at most TEXT_MAX characters; anything else makes the
message malformed. (A NUL in a stop reason crashed the hooks driver's run actor, whose restart
released the lease.) Length is part of the pattern so that msgspec reports one reason."""

NAME_PATTERN = r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,62}\Z"
"""As `harmony.config.NAME_RE` (sites, workloads, meshes), with \\Z: `$` accepts a newline."""
Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
"""A site, mesh or workload name: they become subject tokens, file names and env values."""

Shown = Annotated[str, msgspec.Meta(max_length=SHOWN_MAX)]
"""Display-only text; the sending side makes it `shown` (printable, cut) when it is built."""

Finite = Annotated[float, msgspec.Meta(ge=-1e15, le=1e15)]
"""A float that is a number: no NaN, no infinity (comparisons with NaN are always false)."""

Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
"""A counter or sequence number."""

Labels = Annotated[
    dict[
        Annotated[str, msgspec.Meta(pattern=LABEL_KEY_PATTERN)],
        Annotated[str, msgspec.Meta(pattern=LABEL_VALUE_PATTERN)],
    ],
    msgspec.Meta(max_length=MAX_LABELS),
]
"""A site's labels (`harmony.strategies.labels`): as bounded as its config allows them."""

Digest = Annotated[str, msgspec.Meta(pattern=rf"\A[0-9a-f]{{{DIGEST_CHARS}}}\Z")]
"""`labels.constraints_digest` of a workload's constraints."""

MAX_ITEMS = 10_000
"""Lists and maps in a message: far above a real mesh (workloads per site, output lines)."""

MAX_FRAME_BYTES = 640 * 1024
"""The largest payload the bridge and the heartbeat reader decode. The outbox frames tells up
to 512 KiB (`outbox.MAX_FRAME_BYTES`), asks and heartbeats are a few hundred bytes, and NATS'
default max_payload is 1 MiB: a bigger frame is an attack or a bug, refused before decoding."""


def printable(text: str) -> str:
    """`text` for display: tabs expanded, every other control character shown as an escape."""
    if not _CONTROL_RE.search(text):
        return text
    return _CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", text.expandtabs(4))


def shown(text: str, limit: int = SHOWN_MAX) -> str:
    """`text` made printable and cut to `limit` characters, so that it fits a `Shown` field."""
    text = printable(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
    reason: Shown

    def __post_init__(self) -> None:
        self.reason = shown(self.reason)


ERR_MALFORMED = "malformed"
ERR_UNKNOWN_ACTOR = "unknown-actor"
ERR_HANDLER = "handler-error"
ERR_UNHANDLED = "unhandled-message"
ERR_NOT_EXPORTED = "not-exported"
"""The sender may not reach that actor, or not with that message type (the export list)."""
ERR_UNKNOWN_SENDER = "unknown-sender"
"""The sender in the subject is neither a site of this mesh nor the operator."""
ERR_TOO_LARGE = "too-large"
ERR_RATE_LIMITED = "rate-limited"
ERR_INVALID = "invalid"
"""A well-formed message of an exported type whose content is refused (a self-probe)."""
ERR_SUBJECT_MISMATCH = "subject-mismatch"
"""A heartbeat whose site or mesh is not the one its subject names."""
ERR_RELAYED = "relayed"
"""A message JetStream published for someone else: an API answer or a stored message sent to
the reply or deliver subject its requester chose. Permissions cannot stop that (JetStream
answers wherever it is asked to), so the sender in such a subject proves nothing."""


def relayed(headers: dict[str, str] | None, reply: str) -> bool:
    """Whether a message on one of our subjects came from JetStream, not from its sender:
    our own frames never carry headers, JetStream's stored messages and consumer deliveries
    do (``Nats-*``) or come with a ``$JS.`` reply subject."""
    return bool(headers) or reply.startswith("$JS.")


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
    return (
        str(e)
        .replace(
            f"Expected `str` matching regex {_TEXT_PATTERN!r}",
            f"a control character (C0, DEL or C1) or more than {TEXT_MAX} characters in a string",
        )
        .replace(
            f"Expected `str` matching regex {NAME_PATTERN!r}",
            "not a name (letters, digits, '-', '_', at most 63; "
            "no control character, dot or space)",
        )
    )


def _check_version(msg: Message) -> Message:
    if msg.v != SCHEMA_VERSION:
        raise WireError(f"unsupported schema version {msg.v} (this side speaks {SCHEMA_VERSION})")
    return msg


def _decode(data: bytes, which: int) -> Any:
    """Whatever goes wrong decoding bytes from the wire is a `WireError`. msgspec raises
    `UnicodeDecodeError` (not a `DecodeError`) for invalid UTF-8 in a string; it escaped the
    bridge uncounted and left the ask unanswered. Catch every `Exception`: this is hostile
    input, and a decoder failure of any kind means the same thing."""
    try:
        return _codec.decoders()[which].decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise WireError(_explain(e)) from None
    except UnicodeDecodeError as e:
        raise WireError(f"invalid UTF-8 in a string: {e.reason} at byte {e.start}") from None
    except Exception as e:
        raise WireError(f"undecodable: {type(e).__name__}: {e}") from None


def decode(data: bytes) -> Message:
    """Decode one message (an ask or a reply)."""
    msg: Message = _decode(data, 0)
    return _check_version(msg)


def decode_many(data: bytes) -> list[Message]:
    """Decode a tell frame: an array of messages."""
    msgs: list[Message] = _decode(data, 1)
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
