"""Recorded mesh data: polls and events captured once, replayed by `RecordedFeed`.

The snapshot tests and the screenshots render a recording instead of a live mesh, so the
picture changes only when the layout does (pids, ages and times are frozen in the file).
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from harmony.actors.journal import JournalEvent
from harmony.actors.messages import Output, Snapshot
from harmony.mesh import wire
from harmony.tui.feed import EventUpdate, FeedUpdate, RecordedFeed, SnapshotsUpdate


class RecordedPoll(msgspec.Struct):
    at: float
    """Local monotonic time at which the answers arrived."""
    snapshots: list[Snapshot]
    events_after: list[JournalEvent] = []
    """Events that arrived after this poll, before the next one."""


class Recording(msgspec.Struct):
    mesh: str
    polls: list[RecordedPoll]
    outputs: dict[str, list[str]] = {}
    """"site/workload" -> the driver output tail `GetOutput` answers with."""
    now: float = 0.0
    """The clock to render at (a little after the last poll)."""
    wall: float = 0.0

    def updates(self) -> list[FeedUpdate]:
        out: list[FeedUpdate] = []
        for poll in self.polls:
            out.append(SnapshotsUpdate({s.site: s for s in poll.snapshots}, poll.at))
            out.extend(EventUpdate(e) for e in poll.events_after)
        return out

    def feed(self) -> RecordedFeed:
        answers: dict[tuple[str, str], wire.Message | None] = {}
        for name, lines in self.outputs.items():
            site, workload = name.split("/", 1)
            answers[(site, f"agent/workload/{workload}/run")] = Output(lines=lines)
        return RecordedFeed(self.mesh, self.updates(), answers)


def load(path: Path) -> Recording:
    return msgspec.json.decode(path.read_bytes(), type=Recording)


def dump(recording: Recording, path: Path) -> None:
    path.write_bytes(msgspec.json.format(msgspec.json.encode(recording), indent=1))
