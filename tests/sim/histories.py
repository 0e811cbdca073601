"""Tiny synthetic histories for checker tests: journal lines and simulation faults."""

from __future__ import annotations

from harmony.actors.journal import JournalEvent
from harmony.sim.checks import SIM
from harmony.sim.world import Expectation, encode_expectations


def ev(
    t: float, site: str, kind: str, workload: str = "w", token: int | None = None
) -> JournalEvent:
    return JournalEvent(
        site=site, workload=workload, kind=kind, reason="", mono=t, wall=t, token=token
    )


def run(site: str, start: float, end: float | None, token: int | None = None) -> list[JournalEvent]:
    """A copy on `site` from `start` (decision) to `end` (driver stopped); None: unknown."""
    out = [
        ev(start, site, "start", token=token),
        ev(start + 0.01, site, "driver-running", token=token),
    ]
    if end is not None:
        out.append(ev(end, site, "driver-stopped", token=token))
    return out


def fault(
    t: float, kind: str, expect: dict[str, Expectation | None], site: str = ""
) -> JournalEvent:
    return JournalEvent(
        site=site,
        workload="",
        kind=kind,
        reason="",
        mono=t,
        wall=t,
        incarnation=SIM,
        detail={"expect": encode_expectations(expect)},
    )


def history(*parts: JournalEvent | list[JournalEvent]) -> list[JournalEvent]:
    flat: list[JournalEvent] = []
    for p in parts:
        flat.extend(p if isinstance(p, list) else [p])
    return sorted(flat, key=lambda e: e.mono)
