"""Request/reply over the connection's one long-lived inbox: `request` and `gather`.

It lives apart from the connection's lifecycle because it is its own protocol: a token per
request, the `_Reply` a caller waits on, and the collectors of `gather`, all matched by
`ReplyTable.deliver` on the inbox subscription that `MeshConnection` makes on every connect.
`MeshConnection` holds one `ReplyTable`, made with its `publish`, which a request calls.

Waiting for a reply uses a bare `threading.Lock` (see `_Reply`), cheaper to release from the
loop and to wake on than a `concurrent.futures.Future`.
"""

from __future__ import annotations

import itertools
import secrets
import threading
from collections.abc import Callable

from nats.aio.msg import Msg

Publish = Callable[[str, bytes, str], None]
Done = Callable[[list[bytes]], bool]
"""Says whether `gather` has all the replies it needs (it is given all so far)."""


class NoResponders(Exception):
    """A request went to a subject nobody listens on (the site or actor is not there)."""


class _Reply:
    """The one reply a request waits for: a lock that the loop releases once it is set.

    Cheaper than a `concurrent.futures.Future` (no Condition, no waiter list) on both sides
    of the one hand-over that a request needs.
    """

    __slots__ = ("_done", "data", "error")

    def __init__(self) -> None:
        self._done = threading.Lock()
        self._done.acquire()
        self.data = b""
        self.error: BaseException | None = None

    def set(self, data: bytes, error: BaseException | None = None) -> None:
        """Called once (whoever pops the request's token from the table calls it)."""
        self.data = data
        self.error = error
        self._done.release()

    def wait(self, timeout: float | None) -> bool:
        return self._done.acquire(timeout=-1 if timeout is None else max(0.0, timeout))


class ReplyTable:
    """The requests and gathers waiting for replies on one inbox (``<inbox>.<token>``)."""

    def __init__(self, inbox: str, publish: Publish) -> None:
        self.inbox = inbox
        self._publish = publish
        self._pending: dict[str, _Reply] = {}
        self._collectors: dict[str, Callable[[bytes], None]] = {}
        self._tokens = itertools.count(1)  # next() is atomic: any thread may take one

    @property
    def subject(self) -> str:
        """The subscription that brings every reply in."""
        return f"{self.inbox}.*"

    @property
    def waiting(self) -> int:
        """How many requests wait for their reply."""
        return len(self._pending)

    def _token(self, kind: str = "") -> str:
        """A request's token: unguessable, because whoever may publish to this inbox learns
        its name (a core tells an edge's server, see `harmony.security.permissions`) and
        must answer only requests that reached it."""
        return f"{kind}{next(self._tokens)}x{secrets.token_hex(8)}"

    def request(self, subject: str, payload: bytes, timeout: float) -> bytes:
        """Publish with a reply subject and wait (on this thread) for the first reply."""
        token = self._token()
        reply = _Reply()
        self._pending[token] = reply
        self._publish(subject, payload, f"{self.inbox}.{token}")
        if not reply.wait(timeout):
            if self._pending.pop(token, None) is not None:
                raise TimeoutError(f"no reply on {subject} within {timeout:g} s")
            # The loop popped the token first: the reply is being set right now.
            reply.wait(None)
        if reply.error is not None:
            if isinstance(reply.error, NoResponders):
                raise NoResponders(f"no responder on {subject}")
            raise reply.error
        return reply.data

    def deliver(self, msg: Msg) -> None:
        """On the loop: hand a reply on the inbox to its request or gather."""
        token = msg.subject.rsplit(".", 1)[-1]
        collect = self._collectors.get(token)
        if collect is not None:
            if msg.data:
                collect(msg.data)
            return
        reply = self._pending.pop(token, None)
        if reply is None:  # late, after the caller gave up
            return
        if not msg.data and msg.headers and msg.headers.get("Status") == "503":
            reply.set(b"", NoResponders("nobody is subscribed to that subject"))
        else:
            reply.set(msg.data)

    def gather(
        self, subject: str, payload: bytes, timeout: float, done: Done | None = None
    ) -> list[bytes]:
        """Publish one request and collect every reply until `done(replies)` or `timeout`.

        Replies come in on the connection's one long-lived inbox subscription: a fresh
        subscription per request would race with interest propagation across the cluster's
        routes, and replies from far sites would be dropped.
        """
        replies: list[bytes] = []
        finished = threading.Event()
        token = self._token("g")

        def collect(data: bytes) -> None:
            replies.append(data)
            if done is not None and done(list(replies)):
                finished.set()

        self._collectors[token] = collect
        try:
            self._publish(subject, payload, f"{self.inbox}.{token}")
            finished.wait(timeout)
        finally:
            self._collectors.pop(token, None)
        return list(replies)

    def fail_all(self, error: BaseException) -> None:
        """Release every waiting request with `error` (the connection is closing)."""
        for token in list(self._pending):
            reply = self._pending.pop(token, None)
            if reply is not None:
                reply.set(b"", error)
