"""The app on recorded data: keys, confirmations, outcomes, filters, the connection banner.

No mesh here: `RecordedFeed` answers asks from a table (and like an agent that does not
know a command otherwise), so what the app does with each answer is checked exactly.
"""

from __future__ import annotations

import asyncio

import msgspec
from support.waiting import wait_for

from harmony.actors.messages import ActorInfo, CommandResult, FenceWorkload, MoveWorkload
from harmony.tui.app import HarmonyApp
from harmony.tui.commands import SiteControl
from harmony.tui.feed import ConnectionUpdate, RecordedFeed, SnapshotsUpdate
from harmony.tui.model import Key
from harmony.tui.recording import Recording

SIZE = (160, 48)


def recorded(recording: Recording) -> tuple[HarmonyApp, RecordedFeed]:
    feed = recording.feed()
    app = HarmonyApp(feed, clock=lambda: recording.now, wall_clock=lambda: recording.wall)
    return app, feed


def screen_name(app: HarmonyApp) -> str:
    return type(app.screen).__name__


def test_silent_site_keeps_its_last_known_tree_greyed(recording: Recording) -> None:
    async def scenario() -> None:
        app, _feed = recorded(recording)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.model.polls == 2, 5)
            tree = app.mesh_tree
            assert tree.label_of(Key("site-a")).startswith("site-a silent")
            assert "last known state" in tree.label_of(Key("site-a"))
            # Its last known workloads are still there (the ledger was running on it).
            assert "● active" in tree.label_of(Key("site-a", "agent/workload/ledger"))
            # The takeover on site-b is marked as changed.
            assert Key("site-b", "agent/workload/ledger") in app.model.changed_at
            assert "token 9" in tree.label_of(Key("site-b", "agent/workload/ledger"))
            assert "3 sites: 2 alive, 1 silent" in tree.root.label.plain

    asyncio.run(scenario())


def test_fence_needs_confirmation_and_reports_the_outcome(recording: Recording) -> None:
    async def scenario() -> None:
        app, feed = recorded(recording)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.model.polls == 2, 5)
            node = app.mesh_tree.node_for(Key("site-b", "agent/workload/ledger/run"))
            app.mesh_tree.move_cursor(node)
            await pilot.press("f")
            await wait_for(pilot, lambda: screen_name(app) == "ConfirmScreen", 5)
            await pilot.press("n")  # cancelled: nothing is sent
            await wait_for(pilot, lambda: screen_name(app) != "ConfirmScreen", 5)
            assert not [a for a in feed.asked if not a[1].endswith("/run")]
            await pilot.press("f", "y")
            await wait_for(pilot, lambda: app.outcomes, 5)
            site, path, _message = next(a for a in feed.asked if isinstance(a[2], FenceWorkload))
            assert (site, path) == ("site-b", "agent/workload/ledger")
            _action, outcome = app.outcomes[-1]
            # The recorded feed answers like an agent without this handler.
            assert not outcome.ok and "unhandled-message" in outcome.text
            kinds = [e.kind for e in app.model.events_for("site-b", "ledger")]
            assert kinds[-2:] == ["tui-fence", "tui-fence"]  # requested, then the outcome

    asyncio.run(scenario())


def test_move_picks_a_target_and_shows_an_unsupported_command_clearly(
    recording: Recording,
) -> None:
    async def scenario() -> None:
        app, feed = recorded(recording)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.model.polls == 2, 5)
            app.mesh_tree.move_cursor(
                app.mesh_tree.node_for(Key("site-b", "agent/workload/ledger"))
            )
            await pilot.press("m")
            await wait_for(pilot, lambda: screen_name(app) == "MoveScreen", 5)
            await pilot.press("down", "enter")  # targets: site-a, site-c → site-c
            await wait_for(pilot, lambda: screen_name(app) == "ConfirmScreen", 5)
            await pilot.press("y")
            await wait_for(pilot, lambda: app.outcomes, 5)
            action, outcome = app.outcomes[-1]
            assert (action.kind, action.site, action.target) == ("move", "site-b", "site-c")
            assert outcome.text == (
                "move ledger: the agent on site-b does not support MoveWorkload yet "
                "(unhandled-message)"
            )
            sent = [m for _, _, m in feed.asked if isinstance(m, MoveWorkload)]
            assert [m.target for m in sent] == ["site-c"]

    asyncio.run(scenario())


def test_drain_reports_a_command_result(recording: Recording) -> None:
    async def scenario() -> None:
        app, feed = recorded(recording)
        feed.answers[("site-c", "agent")] = CommandResult(ok=False, detail="no target")
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.model.polls == 2, 5)
            app.mesh_tree.move_cursor(app.mesh_tree.node_for(Key("site-c")))
            await pilot.press("d", "y")
            await wait_for(pilot, lambda: app.outcomes, 5)
            assert app.outcomes[-1][1].text == "drain site-c: refused: no target"

    asyncio.run(scenario())


def test_workload_keys_are_disabled_without_a_workload_and_kill_hidden_outside_the_demo(
    recording: Recording,
) -> None:
    async def scenario() -> None:
        app, _feed = recorded(recording)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.model.polls == 2, 5)
            app.mesh_tree.move_cursor(app.mesh_tree.node_for(Key("site-b")))
            await pilot.pause()
            assert app.check_action("workload", ("fence",)) is None  # shown, greyed
            assert app.check_action("site", ("drain",)) is True
            assert app.check_action("site", ("kill",)) is False  # not in the footer at all
            assert app.check_action("site", ("restart",)) is False
            await pilot.press("f")
            await pilot.pause()
            assert screen_name(app) != "ConfirmScreen"

    asyncio.run(scenario())


def test_kill_in_the_demo_calls_the_killer_after_confirmation(recording: Recording) -> None:
    killed: list[str] = []
    control = SiteControl(kill=killed.append, restart=lambda site: None)

    async def scenario() -> None:
        app = HarmonyApp(recording.feed(), clock=lambda: recording.now, control=control)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.model.polls == 2, 5)
            app.mesh_tree.move_cursor(app.mesh_tree.node_for(Key("site-c", "agent/site")))
            await pilot.press("k")
            await wait_for(pilot, lambda: screen_name(app) == "ConfirmScreen", 5)
            assert killed == []
            await pilot.press("y")
            await wait_for(pilot, lambda: app.outcomes, 5)
            assert killed == ["site-c"] and app.outcomes[-1][1].ok

    asyncio.run(scenario())


def test_event_log_filters_cycle_by_site_and_workload(recording: Recording) -> None:
    async def scenario() -> None:
        app, _feed = recorded(recording)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.model.polls == 2, 5)
            log = app.log_pane
            total = len(log.lines)
            assert total == len(app.model.events) > 0
            await pilot.press("e")  # site-a
            assert (log.site_filter, log.workload_filter) == ("site-a", None)
            await pilot.press("e")  # site-b
            assert log.site_filter == "site-b"
            assert len(log.lines) == len(app.model.events_for("site-b")) < total
            await pilot.press("w")  # site-b / inference
            assert log.workload_filter == "inference"
            assert len(log.lines) == len(app.model.events_for("site-b", "inference"))
            assert "site: site-b" in str(log.border_title)
            await pilot.press("x")
            assert (log.site_filter, log.workload_filter) == (None, None)
            assert len(log.lines) == total

    asyncio.run(scenario())


def test_lost_connection_shows_a_banner_until_it_is_back(recording: Recording) -> None:
    async def scenario() -> None:
        app, _feed = recorded(recording)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.model.polls == 2, 5)
            assert not app.banner.has_class("shown")
            app._post_update(ConnectionUpdate("disconnected"))
            await wait_for(pilot, lambda: app.banner.has_class("shown"), 5)
            assert "reconnecting" in str(app.banner.render())
            assert "[disconnected]" in app.mesh_tree.root.label.plain
            # The tree keeps its last known state meanwhile.
            assert app.mesh_tree.label_of(Key("site-b")).startswith("site-b alive")
            app._post_update(ConnectionUpdate("connected", "127.0.0.1:4222"))
            await wait_for(pilot, lambda: not app.banner.has_class("shown"), 5)

    asyncio.run(scenario())


def test_help_lists_the_keys(recording: Recording) -> None:
    async def scenario() -> None:
        app, _feed = recorded(recording)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("question_mark")
            await wait_for(pilot, lambda: screen_name(app) == "HelpScreen", 5)
            await pilot.press("escape")
            await wait_for(pilot, lambda: screen_name(app) == "Screen", 5)

    asyncio.run(scenario())


def test_cursor_stays_on_its_node_when_nodes_appear_above_it(recording: Recording) -> None:
    async def scenario() -> None:
        app, _ = recorded(recording)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.model.polls == 2, 5)
            app.mesh_tree.move_cursor(app.mesh_tree.node_for(Key("site-c")))
            await wait_for(pilot, lambda: app.selected() == Key("site-c"), 5)
            snaps = {s.site: s for s in recording.polls[-1].snapshots}
            extra = ActorInfo(
                path="agent/workload/extra", kind="workload-supervisor", state="running"
            )
            b = snaps["site-b"]
            snaps["site-b"] = msgspec.structs.replace(b, actors=[*b.actors, extra])
            app._post_update(SnapshotsUpdate(snaps, recording.now))
            await wait_for(pilot, lambda: app.mesh_tree.node_for(Key("site-b", extra.path)), 5)
            await pilot.pause()
            assert app.selected() == Key("site-c")
            assert Key("site-b", extra.path) in app.model.changed_at  # new: highlighted

    asyncio.run(scenario())


def test_tree_follows_a_restarted_site_whose_actors_come_back_one_by_one(
    recording: Recording,
) -> None:
    """A restarted agent answers with part of its tree at first: nodes go and come back."""

    async def scenario() -> None:
        app, _ = recorded(recording)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.model.polls == 2, 5)
            full = {s.site: s for s in recording.polls[-1].snapshots}
            b = full["site-b"]
            workload_only = [a for a in b.actors if a.path.startswith("agent/workload/")]
            stages = [[], workload_only, [a for a in b.actors if a.path != "agent/site"], b.actors]
            for at, actors in enumerate(stages, start=1):
                snaps = {**full, "site-b": msgspec.structs.replace(b, actors=actors)}
                app._post_update(SnapshotsUpdate(snaps, recording.now + at))
                polls = 2 + at
                await wait_for(pilot, lambda polls=polls: app.model.polls == polls, 5)
                await pilot.pause()
                assert sorted(app.mesh_tree.keys) == sorted(k for k, _ in app.model.tree())
                shown = app.mesh_tree.node_for(Key("site-b", "agent/workload/ledger/run"))
                assert (shown is not None) == bool(actors)
            parent = app.mesh_tree.node_for(Key("site-b", "agent/workload/ledger"))
            assert parent is not None and parent.parent is app.mesh_tree.node_for(
                Key("site-b", "agent")
            )

    asyncio.run(scenario())
