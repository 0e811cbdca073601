"""OverdueTimers: PeerWatch's deadlines, kept on the mesh connection's loop thread.

PeerWatch used to check every peer at a fixed tick, a fifth of the heartbeat interval: 17
wake-ups a second of a timer thread and an actor thread, in every agent, to find nearly
always that every peer had beaten in time (a third of an idle agent's CPU, measured). Here
each peer has one timer on the loop thread, which wakes for each heartbeat anyway: a
heartbeat moves its sender's timer forward, so a timer fires only when its peer is
overdue, and PeerWatch wakes to judge a change, not to look for one. Detection is exact
(no tick to wait for), which also makes it faster.

PeerWatch says what it expects after every check it makes (`expect`): per peer, an anchor
(the arrival it judged from, or its own start for a peer never heard) and the time the peer
becomes overdue if nothing arrives after the anchor. A heartbeat that arrives later moves the
deadline by as much as it is newer than the anchor. Stall discounts stay PeerWatch's: they
are in the deadlines it sets.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

Plan = Mapping[str, tuple[float, float]]
"""site -> (anchor, due): overdue at `due` unless heard after `anchor`."""


class OverdueTimers:
    """One asyncio timer per expected peer; `fire(site, due)` is called on the loop thread
    when a peer's deadline passes with no heartbeat to move it."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        now: Callable[[], float],
        fire: Callable[[str, float], None],
    ) -> None:
        self._loop = loop
        self._now = now
        self._fire = fire
        self._plan: dict[str, tuple[float, float]] = {}
        self._heard: dict[str, float] = {}
        self._handles: dict[str, asyncio.TimerHandle] = {}
        self._closed = False

    # -- any thread ---------------------------------------------------------------------
    def expect(self, plan: Plan) -> None:
        """Replace the deadlines (from PeerWatch's thread); a site left out has none."""
        self._call(self._set, dict(plan))

    def close(self) -> None:
        self._call(self._cancel_all)

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        if self._loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing to time
            self._loop.call_soon_threadsafe(fn, *args)

    # -- the loop thread ----------------------------------------------------------------
    def heard(self, site: str, at: float) -> None:
        """A heartbeat of `site` arrived at `at`: its deadline moves with it."""
        if at <= self._heard.get(site, float("-inf")):
            return
        self._heard[site] = at
        if site in self._plan:
            self._arm(site)

    def _set(self, plan: dict[str, tuple[float, float]]) -> None:
        if self._closed:
            return
        self._plan = plan
        for site in set(self._handles) - set(plan):
            self._handles.pop(site).cancel()
        for site in plan:
            self._arm(site)

    def _arm(self, site: str) -> None:
        old = self._handles.pop(site, None)
        if old is not None:
            old.cancel()
        anchor, due = self._plan[site]
        heard = self._heard.get(site, anchor)
        if heard > anchor:
            due += heard - anchor
        delay = max(0.0, due - self._now())
        self._handles[site] = self._loop.call_later(delay, self._overdue, site, due)

    def _overdue(self, site: str, due: float) -> None:
        self._handles.pop(site, None)
        self._fire(site, due)

    def _cancel_all(self) -> None:
        self._closed = True
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
