"""Remote strings never drive the terminal: a forged snapshot reply and a forged journal
event, full of escape sequences and Rich markup, shown by `harmony status` and the TUI.

The forger is a plain client of a real nats-server that answers the mesh's snapshot
requests (anyone who can publish on the subject could); its payloads bypass our encoder so
they carry raw control characters, as an attacker's would.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
from nats.aio.msg import Msg
from rich.console import Console
from support.waiting import wait_for

from harmony.actors.messages import ActorInfo, PeerInfo, Snapshot
from harmony.client import clean_snapshot
from harmony.mesh import subjects
from harmony.mesh.connection import MeshConnection
from harmony.render import mesh_view
from harmony.textsafe import printable
from harmony.tui.app import HarmonyApp
from harmony.tui.feed import MeshFeed
from harmony.tui.model import Key
from harmony.tui.widgets import detail_renderable

MESH = "forged"
TITLE, CLIP, CLEAR = "\x1b]0;pwned\x07", "\x1b]52;c;Zm9v\x07", "\x1b[2J"
LINK = "[link=http://x]y[/link]"
HOSTILE = f"a{TITLE}b{CLIP}c{CLEAR}d{LINK}e\x9b31m\u202e"
SITE = f"evil{LINK}"
"""The site name must pass the wire's name check (no control characters): markup only."""
STATUS = [sys.executable, "-m", "harmony.cli", "status"]
# Any CSI but SGR (colours, which Rich itself emits when forced to a terminal), any OSC, BEL.
TERMINAL_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-ln-z]|\x1b\]|\x07|\x9b|\x9d|\x1bP")


def forged_snapshot() -> bytes:
    actor = {"t": "ActorInfo", "v": 1, "restarts": 0}
    actors = [
        {**actor, "path": "agent", "kind": "agent", "state": "running", "detail": {}, "policy": ""},
        {
            **actor,
            "path": f"agent/workload/w{TITLE}",
            "kind": f"workload-supervisor{CLIP}",
            "state": "running",
            "policy": HOSTILE,
            "detail": {"phase": "running", "token": HOSTILE, HOSTILE: HOSTILE},
        },
        {**actor, "path": "agent/workload/w", "kind": "k", "state": "running", "policy": ""}
        | {"detail": {"phase": "running", "strategy": LINK, "lease": LINK, "fence_in": CLEAR}},
    ]
    snap = {"t": "Snapshot", "v": 1, "mesh": MESH, "site": SITE, "witness": False}
    snap |= {"incarnation": LINK, "mono": 0.0, "wall": 0.0, "actors": actors}
    snap |= {"peers": [{"t": "PeerInfo", "v": 1, "site": LINK, "state": "alive"}]}
    snap |= {"nats_url": f"u:pw@h{LINK}"}
    return msgspec.msgpack.encode(snap)


def forged_event() -> bytes:
    event = {"t": "JournalEvent", "v": 1, "site": SITE, "workload": f"w{TITLE}"}
    event |= {"kind": f"fail{CLEAR}", "reason": HOSTILE, "mono": 0.0, "wall": 0.0}
    return msgspec.msgpack.encode(event)


@pytest.fixture
def forger(make_nats_server: Callable[..., Any]) -> Iterator[tuple[str, MeshConnection]]:
    """A real server, and a client of it that answers every snapshot request with lies."""
    node = make_nats_server(name="forger")
    conn = MeshConnection([node.client_url], "forger").start()
    try:
        conn.wait_connected(10)

        def answer(msg: Msg) -> None:
            if msg.reply:
                conn.publish(msg.reply, forged_snapshot())

        conn.subscribe(subjects.snapshot_all(MESH), answer)
        yield node.client_url, conn
    finally:
        conn.close()


def assert_clean(shown: str) -> None:
    assert not TERMINAL_CONTROL.search(shown), repr(shown)
    assert "\u202e" not in shown, repr(shown)


def test_printable_strips_sequences_and_bounds_length() -> None:
    assert printable(HOSTILE) == f"abcd{LINK}e"
    assert printable("x\ty\nz") == "x y z"
    assert printable("\x1b]8;;http://x\x1b\\y\x1b]8;;\x1b\\") == "y"  # an OSC 8 link
    assert printable("\x1bP1$r\x1b\\ok\x1bc") == "ok"  # DCS, RIS
    assert printable("unterminated \x1b]0;title") == "unterminated "
    assert printable("é ü 日本") == "é ü 日本"
    cut = printable("x" * 1000, limit=10)
    assert len(cut) == 10 and cut.endswith("…")
    assert printable(b"\xff") == "b'\\xff'" and isinstance(printable(object()), str)


def test_render_of_a_hostile_snapshot_struct_is_plain() -> None:
    """Structs built in-process skip the wire's checks: `clean_snapshot` alone must do."""
    info = ActorInfo(path="agent", kind="agent", state="running")
    bad = ActorInfo(path="agent/workload/w", kind="k", state="running", detail={"phase": "running"})
    snap = Snapshot(
        mesh=MESH,
        site=f"s{TITLE}{LINK}",
        witness=False,
        incarnation=CLEAR,
        mono=0.0,
        wall=0.0,
        actors=[info, bad],
        peers=[PeerInfo(site=HOSTILE, state=CLIP)],
        nats_url=f"nats://u:pw@h{TITLE}",
    )
    bad.detail = {"token": HOSTILE, "strategy": LINK}  # after __post_init__: still raw
    clean = clean_snapshot(snap)
    out = io.StringIO()
    Console(file=out, width=300, force_terminal=True, color_system="truecolor").print(
        mesh_view(MESH, {clean.site: clean})
    )
    assert_clean(out.getvalue())
    assert LINK in out.getvalue() and "pw" not in out.getvalue()


def test_status_prints_no_remote_terminal_control(forger: tuple[str, MeshConnection]) -> None:
    url, _ = forger
    env = {**os.environ, "FORCE_COLOR": "1", "COLUMNS": "300"}  # as on a real terminal
    out = subprocess.run(
        [*STATUS, "--server", url, "--mesh", MESH, "--timeout", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    shown = out.stdout + out.stderr
    assert SITE in shown, shown  # the forged reply was shown: as plain text
    assert_clean(shown)
    assert LINK in shown and "\x1b]8;" not in shown  # markup shown as itself, never a link
    assert "token " in shown  # the workloads table (markup-prone cells) was printed


def test_tui_shows_no_remote_terminal_control(forger: tuple[str, MeshConnection]) -> None:
    url, conn = forger

    async def scenario() -> None:
        app = HarmonyApp(MeshFeed([url], MESH, interval=0.3))
        async with app.run_test(size=(200, 50)) as pilot:
            tree = app.mesh_tree
            await wait_for(pilot, lambda: tree.node_for(Key(SITE)), 30, "forged site not shown")
            await wait_for(pilot, lambda: app.connection == "connected", 10, "not connected")
            conn.publish(subjects.events(MESH, "evil"), forged_event())
            await wait_for(pilot, lambda: app.model.events, 10, "forged event not shown")
            labels = "\n".join(tree.label_of(k) for k in tree.keys)
            assert SITE in labels, labels
            assert_clean(labels)
            for key in tree.keys:
                console = Console(file=io.StringIO(), width=200, force_terminal=True)
                console.print(detail_renderable(app.model, key, app.clock(), None))
                assert_clean(console.file.getvalue())  # type: ignore[attr-defined]
            assert_clean(app.export_screenshot())  # the whole screen, event log included

    asyncio.run(scenario())
