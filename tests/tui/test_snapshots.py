"""Snapshot tests of the TUI's screens (pytest-textual-snapshot), from a recorded mesh.

The recording (tests/tui/data/failover.json) freezes pids, ages, times and the clock, so the
pictures change only when the layout does. After a deliberate change, look at the new SVGs
and accept them with `pytest tests/tui/test_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot

from harmony.tui.app import HarmonyApp
from harmony.tui.model import Key
from harmony.tui.recording import Recording

SIZE = (160, 48)


def app_for(recording: Recording) -> HarmonyApp:
    return HarmonyApp(
        recording.feed(), clock=lambda: recording.now, wall_clock=lambda: recording.wall
    )


def select(key: Key, *, output: bool = False) -> Callable[[Pilot[Any]], Any]:
    """Put the cursor on `key` once the recording is applied (and its output fetched)."""

    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, HarmonyApp)
        for _ in range(100):
            if app.model.polls == 2 and app.mesh_tree.node_for(key) is not None:
                break
            await pilot.pause(0.02)
        node = app.mesh_tree.node_for(key)
        assert node is not None
        app.mesh_tree.move_cursor(node)
        for _ in range(100):
            if not output or (key.site, key.workload) in app.outputs:
                break
            await pilot.pause(0.02)
        await pilot.pause()

    return run_before


def test_main_screen_after_a_failover(snap_compare: Any, recording: Recording) -> None:
    assert snap_compare(
        app_for(recording),
        terminal_size=SIZE,
        run_before=select(Key("site-b", "agent/workload/ledger"), output=True),
    )


def test_confirm_fence(snap_compare: Any, recording: Recording) -> None:
    assert snap_compare(
        app_for(recording),
        terminal_size=SIZE,
        run_before=select(Key("site-b", "agent/workload/ledger"), output=True),
        press=["f"],
    )


def test_help_screen(snap_compare: Any, recording: Recording) -> None:
    assert snap_compare(
        app_for(recording),
        terminal_size=SIZE,
        run_before=select(Key("site-a")),
        press=["question_mark"],
    )
