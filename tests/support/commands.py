"""The `harmony` command, run as a subprocess the way an operator runs it."""

from __future__ import annotations

import subprocess
import sys

HARMONY = [sys.executable, "-m", "harmony"]


def harmony(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`harmony *args` to completion (stdin closed), its output as text; `env` replaces
    the environment when given."""
    return subprocess.run(
        [*HARMONY, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=env,
    )
