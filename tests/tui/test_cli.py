"""`harmony tui` from the command line: usage errors, and a real run in a terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import time

from support.commands import HARMONY

from harmony.sim.launch import LocalMesh


def test_tui_without_a_target_is_a_usage_error() -> None:
    out = subprocess.run(
        [*HARMONY, "tui"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert out.returncode == 2
    assert "give --config FILE, or both --server URL and --mesh NAME" in out.stderr


def test_tui_runs_in_a_terminal_shows_the_mesh_and_quits_on_q(live_mesh: LocalMesh) -> None:
    main, sub = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "48"}
    proc = subprocess.Popen(
        [*HARMONY, "tui", "--config", str(live_mesh.procs["b"].config_path)],
        stdin=sub,
        stdout=sub,
        stderr=sub,
        env=env,
        start_new_session=True,
    )
    os.close(sub)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        # The tree's root line says how many sites answered once the first poll is in.
        while b"3 sites" not in seen.replace(b"\x1b", b"") and time.monotonic() < deadline:
            seen += _read(main, 0.2)
            seen = seen[-200_000:]
        assert b"3 sites" in seen, seen[-2000:]
        os.write(main, b"q")
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            _read(main, 0.2)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(main)


def _read(fd: int, timeout: float) -> bytes:
    import select

    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return b""
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""
