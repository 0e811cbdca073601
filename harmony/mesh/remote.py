"""Remote actor references: `tell` and `ask` an actor on any site, local or not.

`Bridge.ref(site, path)` gives a `LocalRef` for this site (a plain Pykka call, no NATS hop)
and a `RemoteRef` for any other site. Both have the same two methods, so callers never care
where an actor lives.

Incoming asks reach the actor as a `RemoteAsk` envelope (see `harmony.actors.base`): the
actor runs its handler on its own thread and calls `envelope.reply(result)`, which publishes
the reply from that thread (written straight to the socket when nothing is queued ahead of
it; see `harmony.mesh.fastpaths`). The loop thread never waits for an actor.

What reaches an actor is decided here, on the loop thread, before any decoding that can be
skipped: a frame over `wire.MAX_FRAME_BYTES`, a sender the `WirePolicy` does not know, a
sender over its rate (`RATE_PER_SENDER`), a path or message type not exported to that sender,
and anything that does not decode are refused, counted by reason in `WireStats`, and, for an
ask, answered with an `ErrorReply` naming the reason. The policy comes from the actors layer
(`harmony.actors.exports`): this module knows no actor or message class.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pykka
from nats.aio.msg import Msg

from harmony.mesh import subjects, wire
from harmony.mesh.admission import (
    RATE_BURST,
    RATE_PER_SENDER,
    Refused,
    SenderBuckets,
    WirePolicy,
    WireStats,
)
from harmony.mesh.connection import MeshConnection, NoResponders, Subscription

__all__ = [
    "ActorDirectory",
    "Bridge",
    "LocalRef",
    "Refused",
    "RemoteAsk",
    "RemoteError",
    "RemoteRef",
    "WirePolicy",
    "WireStats",
]


class RemoteError(Exception):
    """The remote side answered an ask with an error (or the actor was not there)."""

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RemoteAsk:
    """An ask that arrived over NATS; the actor answers by calling `reply` exactly once."""

    message: wire.Message
    reply: Callable[[wire.Message], None]


class ActorRefLike(Protocol):
    def tell(self, message: wire.Message) -> None: ...

    def ask(self, message: wire.Message, timeout: float | None = None) -> Any: ...


class ActorDirectory:
    """Path → the live local `ActorRef`. Supervisors re-register a child after a restart,
    so a path keeps working while the actor behind it changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refs: dict[str, pykka.ActorRef[Any]] = {}

    def register(self, path: str, ref: pykka.ActorRef[Any]) -> None:
        with self._lock:
            self._refs[path] = ref

    def unregister(self, path: str, ref: pykka.ActorRef[Any] | None = None) -> None:
        with self._lock:
            if ref is None or self._refs.get(path) is ref:
                self._refs.pop(path, None)

    def get(self, path: str) -> pykka.ActorRef[Any] | None:
        return self._refs.get(path)

    def paths(self) -> list[str]:
        with self._lock:
            return sorted(self._refs)


class LocalRef:
    """An actor of this site, called directly through Pykka."""

    def __init__(self, directory: ActorDirectory, path: str, default_timeout: float) -> None:
        self.directory = directory
        self.path = path
        self.default_timeout = default_timeout

    def _ref(self) -> pykka.ActorRef[Any]:
        ref = self.directory.get(self.path)
        if ref is None:
            raise RemoteError(wire.ERR_UNKNOWN_ACTOR, f"no actor at {self.path}")
        return ref

    def tell(self, message: wire.Message) -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            self._ref().tell(message)

    def ask(self, message: wire.Message, timeout: float | None = None) -> Any:
        try:
            result = self._ref().ask(message, timeout=timeout or self.default_timeout)
        except pykka.ActorDeadError:
            raise RemoteError(wire.ERR_UNKNOWN_ACTOR, f"actor at {self.path} is dead") from None
        except pykka.Timeout:
            raise TimeoutError(f"{self.path} did not answer within {timeout} s") from None
        return result


class RemoteRef:
    """An actor on another site, reached over NATS."""

    def __init__(
        self,
        conn: MeshConnection,
        mesh: str,
        site: str,
        path: str,
        default_timeout: float,
        *,
        sender: str,
        stats: WireStats | None = None,
    ) -> None:
        """`sender`: this site's name, or `subjects.OPERATOR` for an operator's tools; the
        NATS server refuses a publish whose sender is not the credential's own. `stats`
        counts what is sent and times asks (a bridge's)."""
        self.conn = conn
        self.stats = stats
        self.site = site
        self.path = path
        self.default_timeout = default_timeout
        self._tell_subject = subjects.actor(mesh, site, subjects.TELL, sender, path)
        self._ask_subject = subjects.actor(mesh, site, subjects.ASK, sender, path)

    def tell(self, message: wire.Message) -> None:
        self.conn.tell(self._tell_subject, wire.encode(message))
        if self.stats is not None:
            self.stats.passed("tell-sent")

    def ask(self, message: wire.Message, timeout: float | None = None) -> Any:
        timeout = timeout or self.default_timeout
        t0 = time.monotonic()
        try:
            data = self.conn.request(self._ask_subject, wire.encode(message), timeout)
        except NoResponders:
            raise RemoteError(
                wire.ERR_UNKNOWN_ACTOR, f"nobody answers for {self.path} on site {self.site}"
            ) from None
        finally:
            if self.stats is not None:
                self.stats.asked(time.monotonic() - t0)
        try:
            reply = wire.decode(data)
        except wire.WireError as e:
            raise RemoteError(wire.ERR_MALFORMED, f"bad reply from {self.site}: {e}") from None
        if isinstance(reply, wire.ErrorReply):
            raise RemoteError(reply.code, reply.reason)
        return None if isinstance(reply, wire.Ack) else reply


class Bridge:
    """Makes this site's actors reachable over NATS, and other sites' actors reachable here."""

    def __init__(
        self,
        conn: MeshConnection,
        mesh: str,
        site: str,
        directory: ActorDirectory,
        ask_timeout: float = 5.0,
        *,
        policy: WirePolicy | None = None,
        rate: tuple[float, float] | None = (RATE_PER_SENDER, RATE_BURST),
    ) -> None:
        """`policy`: the export list; None lets every sender reach every actor (tests of the
        mesh layer only: an agent always has one). `rate`: (per second, burst) per sender,
        None for no limit."""
        self.conn = conn
        self.mesh = mesh
        self.site = site
        self.directory = directory
        self.ask_timeout = ask_timeout
        self.policy = policy
        self.buckets = SenderBuckets(*rate) if rate is not None else None
        self.stats = WireStats()
        self._subs: list[Subscription] = []

    def start(self) -> None:
        self._subs = [
            self.conn.subscribe(subjects.actor_wildcard(self.mesh, self.site, "tell"), self._tell),
            self.conn.subscribe(subjects.actor_wildcard(self.mesh, self.site, "ask"), self._ask),
        ]

    def wait_ready(self, timeout: float) -> bool:
        return all(s.ready.wait(timeout) for s in self._subs)

    def stop(self) -> None:
        for s in self._subs:
            s.unsubscribe()
        self._subs = []

    def ref(self, site: str, path: str) -> LocalRef | RemoteRef:
        if site == self.site:
            return LocalRef(self.directory, path, self.ask_timeout)
        return RemoteRef(
            self.conn, self.mesh, site, path, self.ask_timeout, sender=self.site, stats=self.stats
        )

    # -- the loop thread's side: check, decode, route, never block -------------------------
    def _admit(self, msg: Msg, many: bool) -> tuple[pykka.ActorRef[Any], list[wire.Message]]:
        """The actor and what it may see of this frame, or `Refused`. Cheap checks first, so
        that a flood costs as little as possible before it is refused."""
        data = msg.data
        if wire.relayed(msg.headers, msg.reply):
            raise Refused(wire.ERR_RELAYED, "headers or a $JS reply: relayed, not sent")
        if len(data) > wire.MAX_FRAME_BYTES:
            raise Refused(
                wire.ERR_TOO_LARGE, f"{len(data)} bytes, more than {wire.MAX_FRAME_BYTES}"
            )
        try:
            sender, path = subjects.actor_target(msg.subject)
        except ValueError:
            raise Refused(wire.ERR_MALFORMED, "not an actor subject") from None
        kind = ""
        if self.policy is not None:
            found = self.policy.sender_kind(sender) if sender != self.site else None
            if found is None:
                raise Refused(
                    wire.ERR_UNKNOWN_SENDER,
                    f"{sender!r} is neither another site of this mesh nor the operator",
                )
            kind = found
        if self.buckets is not None and not self.buckets.allow(sender):
            raise Refused(wire.ERR_RATE_LIMITED, f"{sender} sends more than its rate")
        ref = self.directory.get(path)
        if ref is None:
            raise Refused(wire.ERR_UNKNOWN_ACTOR, f"no actor at {path}")
        if self.policy is not None and not self.policy.exported(kind, path):
            raise Refused(wire.ERR_NOT_EXPORTED, f"{path} is not exported to a {kind}")
        try:
            messages = wire.decode_many(data) if many else [wire.decode(data)]
        except wire.WireError as e:
            raise Refused(wire.ERR_MALFORMED, str(e)) from None
        if self.policy is not None:
            policy = self.policy
            messages = [policy.admit(sender, kind, path, m) for m in messages]
        return ref, messages

    def _checked(self, msg: Msg, many: bool) -> tuple[pykka.ActorRef[Any], list[wire.Message]]:
        """`_admit`, with any failure counted (an unexpected one as malformed: nothing from
        the wire may escape the loop thread's callback, or an ask would go unanswered)."""
        try:
            return self._admit(msg, many)
        except Refused as e:
            self.stats.reject(e.code, msg.subject, e.reason)
            raise
        except Exception as e:
            why = f"{type(e).__name__}: {e}"
            self.stats.reject(wire.ERR_MALFORMED, msg.subject, why)
            raise Refused(wire.ERR_MALFORMED, why) from None

    def _tell(self, msg: Msg) -> None:
        try:
            ref, messages = self._checked(msg, many=True)
        except Refused:
            return  # a tell frame is refused whole, silently: nobody waits for an answer
        self.stats.passed("tell-received", len(messages))
        with contextlib.suppress(pykka.ActorDeadError):
            for m in messages:
                ref.tell(m)

    def _ask(self, msg: Msg) -> None:
        reply_to = msg.reply
        try:
            ref, (message,) = self._checked(msg, many=False)
        except Refused as e:
            self._reply(reply_to, wire.ErrorReply(code=e.code, reason=e.reason))
            return
        self.stats.passed("ask-received")
        if not reply_to:
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(message)  # an ask nobody waits for is a tell
            return
        try:
            ref.tell(RemoteAsk(message, lambda result: self._reply(reply_to, result)))
        except pykka.ActorDeadError:
            self._reply(reply_to, wire.ErrorReply(code=wire.ERR_UNKNOWN_ACTOR, reason="dead"))

    def _reply(self, reply_to: str, result: wire.Message) -> None:
        if reply_to:
            self.conn.publish(reply_to, wire.encode(result))
