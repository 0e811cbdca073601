"""SiteKeyWriter: a bucket ensure that never finishes is abandoned and made again."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from support.waiting import wait_until

from harmony.mesh import site_kv
from harmony.mesh.site_kv import SiteKeyedBucket, SiteKeyWriter


class Value(msgspec.Struct):
    site: str


class Hanging(SiteKeyedBucket[Value]):
    """The first ensure never answers (as once happened on a real mesh); the next one does."""

    def __init__(self) -> None:
        super().__init__("test", Value, 1024, 60.0)
        self.calls = 0

    async def ensure(self, nc: Any, mesh: str, replicas: int, timeout: float = 5.0) -> None:
        self.calls += 1
        if self.calls == 1:
            await asyncio.Event().wait()  # never set


@pytest.fixture
def conn() -> Iterator[Any]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sent: list[str] = []
    yield SimpleNamespace(
        nc=SimpleNamespace(is_connected=True),
        loop=loop,
        publish=lambda subject, data: sent.append(subject),
        sent=sent,
    )
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_a_stuck_ensure_is_abandoned_and_made_again(
    conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(site_kv, "ENSURE_STUCK", 0.3)
    bucket = Hanging()
    writer = SiteKeyWriter(bucket, conn, "m", "a", 1)
    writer.publish(Value("a"))
    wait_until(lambda: bucket.calls == 1, 5)
    writer.publish(Value("a"))  # too early: the first one still has time
    assert bucket.calls == 1 and not writer.ready

    def retried() -> bool:
        writer.publish(Value("a"))  # each write asks again once the first is stuck
        return writer.ready

    wait_until(retried, 5, interval=0.1)
    assert bucket.calls == 2
    assert conn.sent and all(s == "$KV.harmony-m-test.a" for s in conn.sent)
