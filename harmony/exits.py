"""The exit codes of `harmony` commands, and how a command reports an error: one place for
both, so every subcommand module says them the same way.

  0  success
  1  runtime failure (an agent whose supervisor gave up; a status with unreachable sites)
  2  usage or configuration error, or a configuration the running mesh disagrees with
     (nothing was started)
  3  the mesh (NATS) could not be reached
  130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import sys

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def err(msg: str) -> None:
    print(f"harmony: {msg}", file=sys.stderr)
