"""OverdueTimers on a real asyncio loop: a timer fires only when its peer is overdue."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.waiting import wait_until

from harmony.actors.overdue import OverdueTimers


class Loop:
    """A loop running on its own thread, as the mesh connection's does."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn` on the loop thread and wait for it."""
        done = threading.Event()

        def call() -> None:
            fn(*args)
            done.set()

        self.loop.call_soon_threadsafe(call)
        assert done.wait(5)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def loop() -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.close()


def timers(loop: Loop) -> tuple[OverdueTimers, list[tuple[str, float, float]]]:
    fired: list[tuple[str, float, float]] = []  # (site, due, when)
    t = OverdueTimers(
        loop.loop, time.monotonic, lambda s, d: fired.append((s, d, time.monotonic()))
    )
    return t, fired


def test_a_peer_heard_in_time_never_fires_and_a_quiet_one_fires_at_its_deadline(
    loop: Loop,
) -> None:
    t, fired = timers(loop)
    start = time.monotonic()
    t.expect({"b": (start, start + 0.3), "c": (start, start + 0.3)})
    # b beats every 0.1 s for a second; c never does.
    for _ in range(10):
        loop.run(t.heard, "b", time.monotonic())
        time.sleep(0.1)  # the heartbeat interval being simulated, not a wait for a result
    assert [s for s, _, _ in fired] == ["c"], fired
    [(_, due, when)] = fired
    assert due == pytest.approx(start + 0.3)
    assert when >= due
    # b falls quiet: due 0.3 s after its last heartbeat, as the offset from the anchor says.
    last = time.monotonic()
    loop.run(t.heard, "b", last)
    wait_until(lambda: len(fired) == 2, 5)
    assert fired[1][0] == "b"
    assert fired[1][1] == pytest.approx(last + 0.3, abs=0.01)
    assert fired[1][2] >= fired[1][1]


def test_an_old_heartbeat_does_not_move_a_deadline_back(loop: Loop) -> None:
    t, fired = timers(loop)
    now = time.monotonic()
    t.expect({"b": (now, now + 0.2)})
    loop.run(t.heard, "b", now + 0.1)  # moves it to now + 0.3
    loop.run(t.heard, "b", now + 0.05)  # older: ignored
    wait_until(lambda: fired, 5)
    assert fired[0][1] == pytest.approx(now + 0.3)


def test_a_site_left_out_of_the_plan_and_a_closed_timer_never_fire(loop: Loop) -> None:
    t, fired = timers(loop)
    now = time.monotonic()
    t.expect({"b": (now, now + 0.2), "c": (now, now + 0.2)})
    t.expect({"c": (now, now + 0.2)})  # b is silent now: no timer
    wait_until(lambda: fired, 5)
    t.close()
    t.expect({"d": (now, now + 0.05)})  # after close: ignored
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:  # nothing may fire in this half second
        loop.run(lambda: None)
    assert [s for s, _, _ in fired] == ["c"]


def test_a_closed_loop_is_not_an_error(loop: Loop) -> None:
    t, _ = timers(loop)
    loop.close()
    t.expect({"b": (0.0, 1.0)})
    t.close()
    loop.loop = asyncio.new_event_loop()  # for the fixture's close
    loop.thread = threading.Thread(target=loop.loop.run_forever, daemon=True)
    loop.thread.start()
