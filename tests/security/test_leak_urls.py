"""A password in a NATS URL never shows: not in the agent's logs, its snapshot, `harmony
status` (text and JSON), nor the TUI. Real nats-server with a user and password, real agent.
"""

from __future__ import annotations

import asyncio
import io
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from support.waiting import wait_for, wait_until

from harmony.actors.runtime import Agent
from harmony.client import collect_snapshots
from harmony.config import NatsConfig, SiteConfig
from harmony.mesh.connection import MeshConnection, MeshUnavailable
from harmony.mesh.ports import free_ports
from harmony.render import mesh_view
from harmony.textsafe import redact_url
from harmony.tui.app import HarmonyApp
from harmony.tui.feed import MeshFeed
from harmony.tui.model import Key
from harmony.tui.widgets import detail_renderable

PASSWORD = "s3cret-Pa55word"
USER = "harmony"
MESH = "leaky"
STATUS = [sys.executable, "-m", "harmony.cli", "status"]


@pytest.fixture
def locked_server(make_nats_server: Callable[..., Any]) -> Any:
    auth = f'authorization {{ user: "{USER}", password: "{PASSWORD}" }}\n'
    return make_nats_server(name="locked", extra_conf=auth)


def secret_url(node: Any) -> str:
    return node.client_url.replace("nats://", f"nats://{USER}:{PASSWORD}@")


@pytest.fixture
def agent(locked_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[Agent]:
    """An agent in external mode whose only server URL carries the password."""
    caplog.set_level(logging.DEBUG)
    cfg = SiteConfig(
        mesh=MESH,
        site="a",
        data_dir=str(tmp_path / "data-a"),
        nats=NatsConfig(mode="external", servers=[secret_url(locked_server)]),
    )
    ag = Agent(cfg)
    try:
        ag.start(connect_timeout=30)
        yield ag
    finally:
        ag.stop()


def test_redact_url_forms() -> None:
    assert redact_url("nats://user:pass@host:4222") == "nats://user:***@host:4222"
    assert redact_url("nats://tok@host") == "nats://***@host"
    assert redact_url("tls://u:p@ss@host:1/x") == "tls://u:***@host:1/x"
    assert redact_url("user:pass@host:4222") == "user:***@host:4222"  # a netloc
    assert redact_url(["nats://a:b@h1", "nats://h2"]) == "nats://a:***@h1, nats://h2"
    assert redact_url("nats://host:4222") == "nats://host:4222"
    hostile = ",a:" + "b" * 200_000  # quadratic for the matcher: cut first, still hidden
    started = time.monotonic()
    assert "bbb" not in redact_url(hostile) and time.monotonic() - started < 1.0
    long_list = redact_url("nats://u:pw@h " * 1000)
    assert ":pw@" not in long_list and "characters cut" in long_list
    for junk in (None, 3, b"\xff", [object()]):
        assert isinstance(redact_url(junk), str)  # type: ignore[arg-type]


def test_agent_logs_and_snapshot_hide_the_password(
    agent: Agent, caplog: pytest.LogCaptureFixture
) -> None:
    records = caplog.get_records("setup") + caplog.get_records("call")
    logged = "\n".join(r.getMessage() for r in records)
    assert PASSWORD not in logged
    assert f"{USER}:***@" in logged, logged  # the connected URL was logged, redacted
    host = agent.config.nats.servers[0].split("@", 1)[1]
    assert agent.snapshot().nats_url == f"{USER}:***@{host}"


def test_unreachable_warning_and_error_hide_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    (port,) = free_ports(1)
    states: list[str] = []
    # A closed port (nats-py retries that inside connect) and a URL nats-py refuses (the
    # connection's own "cannot reach" warning and state callback).
    conn = MeshConnection(
        [f"nats://{USER}:{PASSWORD}@127.0.0.1:{port}", f"nats://{USER}:{PASSWORD}@h:x"],
        "leak-test",
        on_state=lambda kind, detail: states.append(f"{kind} {detail}"),
    ).start()
    try:
        with pytest.raises(MeshUnavailable) as err:
            conn.wait_connected(0.5)
        wait_until(lambda: "cannot reach NATS" in caplog.text and states, 30)
    finally:
        conn.close()
    assert PASSWORD not in caplog.text and f"{USER}:***@" in caplog.text
    assert PASSWORD not in str(err.value) and "***" in str(err.value)
    assert states and all(PASSWORD not in s for s in states)


def test_status_hides_the_password(agent: Agent, locked_server: Any) -> None:
    url = secret_url(locked_server)
    for extra in ([], ["--json"]):
        out = subprocess.run(
            [*STATUS, "--server", url, "--mesh", MESH, "--timeout", "10", *extra],
            capture_output=True,
            text=True,
            timeout=60,
        )
        shown = out.stdout + out.stderr
        assert out.returncode == 0, shown
        assert "site" in shown and PASSWORD not in shown, shown
        assert f"{USER}:***@" in shown, shown
    # The renderer, fed a real snapshot, too.
    conn = MeshConnection([url], "leak-render").start()
    try:
        conn.wait_connected(10)
        snaps = collect_snapshots(conn, MESH, 5)
    finally:
        conn.close()
    console = Console(file=io.StringIO(), width=200, record=True, color_system=None)
    console.print(mesh_view(MESH, snaps))
    text = console.export_text()
    assert PASSWORD not in text and f"nats={USER}:***@" in text, text


def test_tui_hides_the_password(agent: Agent, locked_server: Any) -> None:
    async def scenario() -> None:
        app = HarmonyApp(MeshFeed([secret_url(locked_server)], MESH, interval=0.3))
        async with app.run_test(size=(160, 40)) as pilot:
            tree = app.mesh_tree
            await wait_for(pilot, lambda: "nats" in tree.label_of(Key("a")), 30, "no site a")
            label = tree.label_of(Key("a"))
            assert PASSWORD not in label and f"{USER}:***@" in label, label
            console = Console(file=io.StringIO(), width=200, record=True, color_system=None)
            console.print(detail_renderable(app.model, Key("a"), app.clock(), None))
            detail = console.export_text()
            assert PASSWORD not in detail and f"{USER}:***@" in detail, detail
            assert PASSWORD not in app.export_screenshot()

    asyncio.run(scenario())


def test_tui_banner_hides_the_password() -> None:
    (port,) = free_ports(1)

    async def scenario() -> None:
        url = f"nats://{USER}:{PASSWORD}@127.0.0.1:{port}"
        app = HarmonyApp(MeshFeed([url], MESH, interval=0.3))
        async with app.run_test(size=(160, 40)) as pilot:
            await wait_for(pilot, lambda: app.banner.has_class("shown"), 10, "no banner")
            text = str(app.banner.render())
            assert "NATS" in text and PASSWORD not in text, text
            assert f"{USER}:***@" in text or "unreachable" in text, text
            assert PASSWORD not in app.export_screenshot()

    asyncio.run(scenario())


def test_config_check_hides_the_password(tmp_path: Path) -> None:
    conf = tmp_path / "a.toml"
    url = f"nats://{USER}:{PASSWORD}@127.0.0.1:4222"
    conf.write_text(f'mesh = "m"\nsite = "a"\n[nats]\nmode = "external"\nservers = ["{url}"]\n')
    out = subprocess.run(
        [sys.executable, "-m", "harmony.cli", "config", "check", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert PASSWORD not in out.stdout + out.stderr and f"{USER}:***@" in out.stdout, out.stdout
