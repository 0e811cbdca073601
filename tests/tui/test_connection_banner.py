"""Losing NATS: the TUI shows a banner, keeps the last known tree, and reconnects by itself."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from support.waiting import wait_for

from harmony.tui.app import HarmonyApp
from harmony.tui.feed import MeshFeed


def test_banner_while_nats_is_down_then_gone_after_reconnect(
    make_nats_server: Callable[..., Any],
) -> None:
    node = make_nats_server(name="tui-banner", supervise=False)

    async def scenario() -> None:
        app = HarmonyApp(MeshFeed([node.client_url], "nobody", interval=0.2))
        async with app.run_test(size=(120, 30)) as pilot:
            await wait_for(pilot, lambda: app.connection == "connected", 15, "never connected")
            assert not app.banner.has_class("shown")
            node.server.stop(grace=2.0)
            await wait_for(pilot, lambda: app.banner.has_class("shown"), 15, "no banner")
            assert "reconnecting" in str(app.banner.render())
            assert "[disconnected]" in app.mesh_tree.root.label.plain
            node.server.start(timeout=20)
            await wait_for(
                pilot,
                lambda: app.connection == "connected" and not app.banner.has_class("shown"),
                30,
                lambda: f"still {app.connection}",
            )

    asyncio.run(scenario())
