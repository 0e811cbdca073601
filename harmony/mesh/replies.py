"""Request/reply over the connection's one long-lived inbox: `request` and `gather`.

It lives apart from the connection's lifecycle because it is its own protocol: a token per
request, the `_Reply` a caller waits on, and the collectors of `gather`, all matched by
`_on_reply` on the inbox subscription that `MeshConnection` makes on every connect.
`MeshConnection` gets it as a mixin (`Replies`); a request goes straight to `publish`.

Waiting for a reply uses a bare `threading.Lock` (see `_Reply`), cheaper to release from the
loop and to wake on than a `concurrent.futures.Future`.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

from nats.aio.msg import Msg

from harmony.mesh.outbox import Publishing


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
        """Called once (whoever pops the request's token from `_pending` calls it)."""
        self.data = data
        self.error = error
        self._done.release()

    def wait(self, timeout: float | None) -> bool:
        return self._done.acquire(timeout=-1 if timeout is None else max(0.0, timeout))


class Replies(Publishing):
    """`MeshConnection`'s request/reply.

    A mixin: `MeshConnection.__init__` sets the attributes declared here and in its bases.
    """

    _thread: threading.Thread
    _inbox: str
    _pending: dict[str, _Reply]
    _collectors: dict[str, Callable[[bytes], None]]
    _tokens: itertools.count[int]

    def request(self, subject: str, payload: bytes, timeout: float) -> bytes:
        """Publish with a reply subject and wait (on this thread) for the first reply."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("MeshConnection.request() called on the loop thread")
        token = str(next(self._tokens))
        reply = _Reply()
        self._pending[token] = reply
        self.publish(subject, payload, reply=f"{self._inbox}.{token}")
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

    def _on_reply(self, msg: Msg) -> None:
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
        self,
        subject: str,
        payload: bytes,
        timeout: float,
        done: Callable[[list[bytes]], bool] | None = None,
    ) -> list[bytes]:
        """Publish one request and collect every reply until `done(replies)` or `timeout`.

        Replies come in on the connection's one long-lived inbox subscription: a fresh
        subscription per request would race with interest propagation across the cluster's
        routes, and replies from far sites would be dropped.
        """
        replies: list[bytes] = []
        finished = threading.Event()
        token = f"g{next(self._tokens)}"

        def collect(data: bytes) -> None:
            replies.append(data)
            if done is not None and done(list(replies)):
                finished.set()

        self._collectors[token] = collect
        try:
            self.publish(subject, payload, reply=f"{self._inbox}.{token}")
            finished.wait(timeout)
        finally:
            self._collectors.pop(token, None)
        return list(replies)
