"""Ctrl-C and SIGTERM that cannot be lost.

Python's default SIGINT handler raises `KeyboardInterrupt` in whatever code the main thread
runs at that moment. When that is a weakref callback, a `__del__` or a `finally` in a library,
the interpreter prints "Exception ignored in ..." and carries on: the user pressed Ctrl-C and
the command ran to its end anyway (and exited 0). So the handler here also *records* the
signal; long loops call `check()` and `requested()` tells the command, at its end, that it
was interrupted even when the exception itself was swallowed.
"""

from __future__ import annotations

import signal
from types import FrameType

_received: list[int] = []


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    _received.append(signum)
    raise KeyboardInterrupt(f"signal {signum}")


def install(*signums: int) -> None:
    """Route these signals (default: SIGINT and SIGTERM) through the recording handler."""
    for signum in signums or (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _on_signal)


def requested() -> int | None:
    """The first stop signal received since `install`/`reset`, if any."""
    return _received[0] if _received else None


def check() -> None:
    """Raise `KeyboardInterrupt` again if a stop signal came and its exception was lost."""
    if _received:
        raise KeyboardInterrupt(f"signal {_received[0]}")


def reset() -> None:
    _received.clear()
