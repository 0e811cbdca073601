"""A stop signal is remembered even when its KeyboardInterrupt is swallowed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from harmony import interrupts


@pytest.fixture
def installed() -> Iterator[None]:
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    interrupts.reset()
    interrupts.install()
    try:
        yield
    finally:
        interrupts.reset()
        for s, h in old.items():
            signal.signal(s, h)


def test_nothing_requested_until_a_signal(installed: None) -> None:
    assert interrupts.requested() is None
    interrupts.check()  # does not raise


def test_a_swallowed_interrupt_is_still_requested(installed: None) -> None:
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0)  # let the handler run here, not later
    except KeyboardInterrupt:
        pass  # what a weakref callback or __del__ does with it
    assert interrupts.requested() == signal.SIGTERM
    with pytest.raises(KeyboardInterrupt):
        interrupts.check()


def test_a_command_interrupted_inside_a_weakref_callback_still_exits_130() -> None:
    """The failure CI saw: Ctrl-C landed in a weakref callback, was printed as "Exception
    ignored" and the command went on to exit 0."""
    code = """
import gc, os, signal, sys, weakref
from harmony import interrupts
interrupts.install()

class Thing: pass

def callback(_ref):
    os.kill(os.getpid(), signal.SIGINT)
    signal.sigtimedwait([], 0)

t = Thing()
r = weakref.ref(t, callback)
del t
gc.collect()
sys.exit(130 if interrupts.requested() == signal.SIGINT else 0)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "Exception ignored" in proc.stderr, proc.stderr
    assert proc.returncode == 130, proc.stderr
