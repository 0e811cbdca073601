"""The TUI at a thousand sites: a real secure nats-server whose sites bucket holds 1,000
summaries, each written with its own site's nkey; keys pressed through Textual's Pilot.

Above `SMALL_MESH` sites the TUI shows the summary first, one collapsed node per site, asks
a site (alone) for its actor tree only while it is expanded, and filters with `/`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from rich.console import Console
from support.big_mesh import (
    BigMesh,
    make_big_mesh,
    site_name,
    stand_in,
    start_server,
    write_summaries,
)
from support.nats_servers import NatsServers
from support.waiting import run_async, wait_for

from harmony.status import SMALL_MESH
from harmony.tui.app import HarmonyApp
from harmony.tui.feed import MeshFeed
from harmony.tui.model import Key

pytestmark = pytest.mark.mesh

N = 1000
MESH = "big"
SIZE = (160, 50)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, BigMesh]]:
    """(server URL, the mesh's material): one secure server, N summaries written."""
    root = tmp_path_factory.mktemp("big-mesh")
    mesh = make_big_mesh(root, MESH, N)
    servers = NatsServers(root / "nats")
    try:
        node = start_server(servers, mesh)
        run_async(write_summaries(node.client_url, mesh, N), timeout=240)
        yield node.client_url, mesh
    finally:
        servers.stop_all()


def app_for(url: str, mesh: BigMesh) -> HarmonyApp:
    feed = MeshFeed([url], MESH, interval=0.5, identity=mesh.admin, summary_every=0.5)
    return HarmonyApp(feed)


def site_keys(app: HarmonyApp) -> list[str]:
    return [k.site for k in app.mesh_tree.keys if k.path == ""]


def detail_text(app: HarmonyApp) -> str:
    console = Console(record=True, width=120, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(app.detail.content)
    return console.export_text()


def test_starts_with_the_summary_and_one_folded_node_per_site(big: tuple[str, BigMesh]) -> None:
    assert N > SMALL_MESH
    url, mesh = big

    async def scenario() -> None:
        app = app_for(url, mesh)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(
                pilot, lambda: len(site_keys(app)) == N, 60, lambda: f"{len(site_keys(app))}"
            )
            assert app.model.large and app.selected() is None  # the cursor on the mesh
            text = detail_text(app)
            assert f"mesh {MESH}  {N} sites" in text, text
            assert f"sites: {N} running" in text, text
            # 20 workloads a site: 10 + 9 + one whose phase cycles with the site's number.
            assert "workloads: 10400 running, 9400 stopped, 200 unknown" in text, text
            assert "unhealthy (20)" in text and "FENCE UNCONFIRMED: probe failed" in text, text
            root = app.mesh_tree.root.label.plain
            assert root.startswith(f"mesh {MESH}  {N} sites: {N} running"), root
            # Folded: no site's actor tree is in the tree, none was asked for.
            assert all(k.path == "" for k in app.mesh_tree.keys)
            assert not any(app.mesh_tree.node_for(Key(s)).is_expanded for s in site_keys(app))  # type: ignore[union-attr]
            label = app.mesh_tree.label_of(Key(site_name(7)))
            assert "20 workloads" in label and "! 2 unhealthy" in label, label
            assert app.check_action("filter", ()) is True

    asyncio.run(scenario())


def test_expanding_a_site_asks_that_site_only_and_only_while_expanded(
    big: tuple[str, BigMesh],
) -> None:
    url, mesh = big
    target, other = site_name(500), site_name(501)

    async def scenario() -> None:
        standins = {s: await stand_in(url, mesh, s) for s in (target, other)}
        try:
            app = app_for(url, mesh)
            async with app.run_test(size=SIZE) as pilot:
                tree = app.mesh_tree
                await wait_for(pilot, lambda: len(site_keys(app)) == N, 60, "no sites")
                await pilot.press("slash", *target, "enter")
                await wait_for(
                    pilot, lambda: site_keys(app) == [target], 60, lambda: site_keys(app)
                )
                await pilot.press("down")
                await wait_for(pilot, lambda: app.selected() == Key(target), 30, "not on it")
                await pilot.press("enter")  # expand
                await wait_for(
                    pilot,
                    lambda: tree.node_for(Key(target, "agent")) is not None,
                    30,
                    lambda: "\n".join(tree.label_of(k) for k in tree.keys),
                )
                assert standins[target].asked, "the tree came without asking the site?"
                assert not standins[other].asked, "a site nobody expanded was asked"
                assert not standins[target].asked_all and not standins[other].asked_all
                assert isinstance(app.feed, MeshFeed) and app.feed.watched == {target}
                # Re-polled while expanded.
                seen = len(standins[target].asked)
                await wait_for(pilot, lambda: len(standins[target].asked) > seen, 30, "no re-poll")
                await pilot.press("enter")  # collapse
                await wait_for(pilot, lambda: tree.node_for(Key(target, "agent")) is None, 30)
                collapsed = time.monotonic()
                # Two summary reads made after the collapse: the poll cycle of the first one
                # (which reads the watched sites after the summaries) has finished.
                await wait_for(pilot, lambda: (app.model.last_poll or 0) > collapsed, 30)
                first = app.model.last_poll or 0
                await wait_for(pilot, lambda: (app.model.last_poll or 0) > first, 30)
                late = [t for t in standins[target].asked if t > first]
                assert not late, "asked after it was collapsed"
                assert not standins[other].asked
        finally:
            for s in standins.values():
                await s.nc.close()

    asyncio.run(scenario())


def test_the_filter_narrows_to_matching_sites_or_workloads_and_escape_clears_it(
    big: tuple[str, BigMesh],
) -> None:
    url, mesh = big

    async def scenario() -> None:
        app = app_for(url, mesh)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: len(site_keys(app)) == N, 60, "no sites")
            await pilot.press("slash", *"s012")
            want = [site_name(i) for i in range(120, 130)]
            await wait_for(pilot, lambda: site_keys(app) == want, 60, lambda: site_keys(app))
            assert "filter s012 (10 shown)" in app.mesh_tree.root.label.plain
            # By a workload's name: w345-<k> is placed on s0345 only.
            for _ in "s012":
                await pilot.press("backspace")
            await pilot.press(*"W345-")  # any case
            await wait_for(
                pilot, lambda: site_keys(app) == [site_name(345)], 30, lambda: site_keys(app)
            )
            await pilot.press("enter")  # keeps the filter, back to the tree
            assert app.focused is app.mesh_tree
            assert site_keys(app) == [site_name(345)]
            await pilot.press("escape")
            await wait_for(pilot, lambda: len(site_keys(app)) == N, 60, lambda: site_keys(app))
            assert app.model.filter_text == "" and "filter" not in app.mesh_tree.root.label.plain

    asyncio.run(scenario())
