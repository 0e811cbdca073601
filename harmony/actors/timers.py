"""One timer thread per agent: it only ever calls `tell`, so it never waits on an actor."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Timer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    """Runs short callbacks (typically `ref.tell(...)`) at monotonic deadlines."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._now = monotonic
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Timer, float, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self._thread.start()

    def after(self, delay: float, fn: Callable[[], None]) -> Timer:
        return self._add(delay, 0.0, fn)

    def every(self, interval: float, fn: Callable[[], None], first: float = 0.0) -> Timer:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        return self._add(first, interval, fn)

    def _add(self, delay: float, interval: float, fn: Callable[[], None]) -> Timer:
        timer = Timer()
        with self._cond:
            heapq.heappush(self._heap, (self._now() + delay, next(self._seq), timer, interval, fn))
            self._cond.notify()
        return timer

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(2)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if self._heap:
                        wait = self._heap[0][0] - self._now()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
                if self._stopped:
                    return
                due, _, timer, interval, fn = heapq.heappop(self._heap)
                if interval and not timer.cancelled:
                    # Fixed rate, but never a burst of catch-up calls after a stall.
                    nxt = max(due + interval, self._now())
                    heapq.heappush(self._heap, (nxt, next(self._seq), timer, interval, fn))
            if timer.cancelled:
                continue
            try:
                fn()
            except Exception:
                log.exception("timer callback failed")
