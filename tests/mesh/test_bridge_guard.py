"""The bridge on a real nats-server: a message with a control character in a string, or an
impossible token, is counted as malformed, answered with an error, and never reaches the actor."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pykka
import pytest
from support.nats_servers import Node
from support.waiting import wait_until

from harmony.actors.messages import StartWorkload, StopWorkload
from harmony.mesh import subjects, wire
from harmony.mesh.connection import MeshConnection
from harmony.mesh.remote import ActorDirectory, Bridge, RemoteAsk, RemoteError, RemoteRef

PATH = "agent/workload/w/run"


@dataclass
class Seen:
    got: list[wire.Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Recorder(pykka.ThreadingActor):
    """Stands in for a run actor: keeps what it got, answers asks with Ack."""

    def __init__(self, seen: Seen) -> None:
        super().__init__()
        self.seen = seen

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, RemoteAsk):
            self.remember(message.message)
            message.reply(wire.Ack())
        else:
            self.remember(message)

    def remember(self, message: wire.Message) -> None:
        with self.seen.lock:
            self.seen.got.append(message)


@pytest.fixture
def site(make_nats_server: Callable[..., Node]) -> Iterator[tuple[Bridge, Seen, RemoteRef]]:
    seen = Seen()
    node = make_nats_server()
    server_conn = MeshConnection([node.client_url], "site-a").start()
    client_conn = MeshConnection([node.client_url], "operator").start()
    ref = Recorder.start(seen)
    try:
        server_conn.wait_connected(10)
        client_conn.wait_connected(10)
        directory = ActorDirectory()
        directory.register(PATH, ref)
        bridge = Bridge(server_conn, "m", "a", directory, ask_timeout=5)
        bridge.start()
        assert bridge.wait_ready(10)
        yield bridge, seen, RemoteRef(client_conn, "m", "a", PATH, 5.0, sender="b")
    finally:
        ref.stop()
        client_conn.close()
        server_conn.close()


def test_control_characters_and_bad_tokens_never_reach_the_actor(
    site: tuple[Bridge, Seen, RemoteRef],
) -> None:
    bridge, seen, remote = site
    bad = [
        StopWorkload(reason="x\0y"),
        StopWorkload(reason="operator\nFENCED token 99"),
        StartWorkload(token=0, reason="late"),
        StartWorkload(token=-1),
    ]
    for msg in bad:
        with pytest.raises(RemoteError) as caught:
            remote.ask(msg)
        assert caught.value.code == wire.ERR_MALFORMED, msg
    # tells: the whole frame is refused, silently (there is nobody to answer)
    remote.tell(StopWorkload(reason="\x1b]0;title\x07"))
    remote.ask(StopWorkload(reason="a real stop"))  # what the actor is allowed to see
    wait_until(lambda: bridge.stats.malformed == len(bad) + 1, 10)
    with seen.lock:
        assert seen.got == [StopWorkload(reason="a real stop")]


def test_the_error_reply_says_what_was_wrong(site: tuple[Bridge, Seen, RemoteRef]) -> None:
    _, _, remote = site
    subject = subjects.actor("m", "a", subjects.ASK, "b", PATH)
    payload = msgspec.msgpack.encode({"t": "StopWorkload", "v": 1, "reason": "x\0y"})
    reply = wire.decode(remote.conn.request(subject, payload, timeout=5))
    assert isinstance(reply, wire.ErrorReply) and reply.code == wire.ERR_MALFORMED
    assert "control character" in reply.reason and "$.reason" in reply.reason
