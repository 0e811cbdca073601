"""LeaseActor: carries out the strategy's lease commands on the mesh and reports what it saw.

It owns no decision. `AcquireLease`, `RenewLease`, `ReleaseLease` and `WatchLease` come from
the workload supervisor; each is answered with exactly one lease event, sent back to it.
`sent_at` is read *before* the request leaves, so the holder's fence deadline never starts
late. Observations (who holds the lease, or that it is gone) come from a KV watcher on the
loop thread and from a slow poll that covers the watcher's gaps (reconnects, elections).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import pykka

from harmony.actors.base import OfWorkload, handles
from harmony.mesh.leases import LeaseConflict, LeaseEntry, LeaseError, LeaseHolder, LeaseStore
from harmony.strategies.commands import AcquireLease, ReleaseLease, RenewLease, WatchLease
from harmony.strategies.events import (
    KEY_ABSENT,
    AcquireFailed,
    LeaseAcquired,
    LeaseObservedGone,
    LeaseObservedHeld,
    LeaseRead,
    LeaseReleased,
    LeaseRenewed,
    ReleaseFailed,
    RenewFailed,
    RenewRefused,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

REPORTS = (
    LeaseAcquired,
    AcquireFailed,
    LeaseRenewed,
    RenewFailed,
    RenewRefused,
    LeaseReleased,
    ReleaseFailed,
    LeaseObservedHeld,
    LeaseObservedGone,
)
"""Every strategy event this actor reports to its parent (which handles them all)."""


@dataclass(frozen=True)
class Observed:
    """Local: the watcher or the poll saw this entry (None: the key never existed)."""

    entry: LeaseEntry | None


@dataclass(frozen=True)
class Poll:
    pass


LEAD_EVERY = 5
"""Polls between checks that the held lease's stream is led from this site's server."""
LEAD_BACKOFF_MAX = 5
"""A step-down that did not bring the leader here doubles the wait before the next one, up
to ``LEAD_EVERY * 2**LEAD_BACKOFF_MAX`` polls. Each step-down leaves the stream without a
leader for a moment, so asking again and again for a move that does not happen (seen after
a heal: 38 step-downs in 90 s, each failing the holder's renewal) would stall the very
stream it means to keep led."""


@dataclass(frozen=True)
class Led:
    """Local: what `LeaseStore.lead` answered ("here", "moved from x", "not current", ...)."""

    result: str


class LeaseActor(OfWorkload):
    kind = "lease"
    polls = 0
    lead_at = 0
    """The poll at which the stream's leader is next checked (`LEAD_EVERY`, backed off)."""
    lead_backoff = 0
    last_seen: tuple[str | None, int] | None = None
    """(holder, revision) of the last observation reported; None: report the next one."""
    watch: Any = None

    @property
    def key(self) -> str:
        """The workload's key in the lease bucket."""
        return self.name

    @property
    def store(self) -> LeaseStore:
        if self.ctx.leases is None:
            raise LeaseError("this agent has no lease store (no mesh connection)")
        return self.ctx.leases

    def holder(self) -> LeaseHolder:
        return LeaseHolder(
            site=self.ctx.site,
            incarnation=self.ctx.incarnation,
            workload=self.name,
            wall=self.ctx.clock.wall(),
        )

    def started(self) -> None:
        self.set_state("idle", holder="", token="")
        self.every(max(0.5, self.ctx.config.timings.renew_interval), Poll(), first=0.0)

    def stopping(self) -> None:
        self._stop_watch()

    def report(self, event: object) -> None:
        self.tell_parent(event)

    def now(self) -> float:
        return self.ctx.clock.monotonic()

    # -- commands --------------------------------------------------------------------------
    def cas(
        self,
        write: Callable[[], T],
        failed: type[AcquireFailed | ReleaseFailed],
        then: Callable[[T], None],
    ) -> None:
        """One take or give-back: a refused CAS (`conflict`) or an error is reported as
        `failed`; a success goes on to `then`. (Renewals report more, see `on_renew_lease`.)"""
        try:
            result = write()
        except LeaseConflict as e:
            self.report(failed(str(e), conflict=True))
            return
        except LeaseError as e:
            self.report(failed(str(e)))
            return
        then(result)

    @handles(AcquireLease)
    def on_acquire_lease(self, cmd: AcquireLease) -> None:
        sent_at = self.now()

        def held(rev: int) -> None:
            self.set_state("held", holder=self.ctx.site, token=str(rev))
            self.report(LeaseAcquired(rev, sent_at))
            self.lead_backoff = 0
            self.lead()

        over = cmd.expected_revision
        self.cas(
            lambda: self.store.acquire(self.key, self.holder(), over=over), AcquireFailed, held
        )

    @handles(RenewLease)
    def on_renew_lease(self, cmd: RenewLease) -> None:
        sent_at = self.now()
        try:
            rev = self.store.renew(self.key, self.holder(), cmd.revision)
        except LeaseConflict as e:
            # Refused: report what the key holds now. Whether that is a loss, or a timed-out
            # renewal of ours that landed, is the strategy's call (`lease_fold`).
            self.report(RenewRefused(cmd.revision, str(e), self.read_after_refusal()))
            return
        except LeaseError as e:
            self.report(RenewFailed(str(e), sent_at))  # it may have been written after all
            return
        self.set_detail(renewed=str(rev))
        self.report(LeaseRenewed(rev, sent_at))

    def read_after_refusal(self) -> LeaseRead | None:
        """The key as a read shows it (reads only return committed writes); None: no read."""
        try:
            entry = self.store.read(self.key)
        except LeaseError:
            return None
        if entry is None:  # no message: expired, and the marker aged out
            return LeaseRead(KEY_ABSENT, None, False)
        h = entry.holder
        ours = h is not None and (h.site, h.incarnation) == (self.ctx.site, self.ctx.incarnation)
        return LeaseRead(entry.revision, h.site if h is not None else None, ours)

    @handles(ReleaseLease)
    def on_release_lease(self, cmd: ReleaseLease) -> None:
        def released(_: None) -> None:
            self.set_state("released", holder="", token="")
            self.report(LeaseReleased())

        self.cas(lambda: self.store.release(self.key, cmd.revision), ReleaseFailed, released)

    @handles(WatchLease)
    def on_watch_lease(self, _: WatchLease) -> None:
        self.last_seen = None  # report the next observation even if unchanged
        self._start_watch()
        self.on_poll(Poll())

    # -- observations ----------------------------------------------------------------------
    @handles(Poll)
    def on_poll(self, _: Poll) -> None:
        self.polls += 1
        if self.state == "held" and self.polls >= self.lead_at:
            self.lead()  # an election may have moved the leader away since
        try:
            entry = self.store.read(self.key)
        except LeaseError as e:
            log.debug("%s: lease read failed: %s", self.path, e)
            return
        self.on_observed(Observed(entry))

    @handles(Observed)
    def on_observed(self, msg: Observed) -> None:
        entry = msg.entry
        seen = (
            (None, 0)
            if entry is None
            else (
                entry.holder.site if entry.holder else None,
                entry.revision,
            )
        )
        if seen == self.last_seen:
            return
        if self.last_seen is not None and entry is not None and entry.revision < self.last_seen[1]:
            return  # a stale read from a lagging replica: never go backwards
        self.last_seen = seen
        if entry is None or entry.holder is None:
            self.set_detail(seen="gone", seen_revision=str(entry.revision if entry else ""))
            self.report(LeaseObservedGone(entry.revision if entry else None))
        else:
            self.set_detail(seen=entry.holder.site, seen_revision=str(entry.revision))
            self.report(LeaseObservedHeld(entry.holder.site, entry.revision))

    def lead(self) -> None:
        """Ask for the held lease's stream to be led from this site's server (see
        `LeaseStore.lead`: a non-holder's death then never leaves the stream leaderless).
        Never waits: the answer comes back as `Led`."""
        path, me = self.path, self.actor_ref
        self.lead_at = self.polls + LEAD_EVERY * 2**self.lead_backoff

        def said(f: Future[str]) -> None:
            err = f.exception()
            if err is not None:
                log.info("%s: lease stream leader not moved: %s", path, err)
                return
            if f.result().startswith("moved"):
                log.info("%s: lease stream leader %s to this site", path, f.result())
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(Led(f.result()))

        try:
            self.store.lead(self.key).add_done_callback(said)
        except LeaseError as e:
            log.info("%s: lease stream leader not moved: %s", path, e)

    @handles(Led)
    def on_led(self, msg: Led) -> None:
        """ "here": the last move (if any) landed, check at the normal pace again. "moved":
        whether it landed shows at the next check; until one does, each check waits twice
        as long as the one before."""
        if msg.result == "here":
            self.lead_backoff = 0
        elif msg.result.startswith("moved"):
            self.lead_backoff = min(self.lead_backoff + 1, LEAD_BACKOFF_MAX)
        self.set_detail(stream_leader=msg.result[:80])

    # -- the KV watcher ----------------------------------------------------------------------
    def _start_watch(self) -> None:
        if self.watch is not None or self.ctx.leases is None:
            return
        ref = self.actor_ref

        def on_entry(entry: LeaseEntry) -> None:  # on the loop thread: hand over, never block
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(Observed(entry))

        self.watch = self.ctx.leases.watch(self.key, on_entry)

    def _stop_watch(self) -> None:
        if self.watch is not None:
            self.watch.cancel()
            self.watch = None
