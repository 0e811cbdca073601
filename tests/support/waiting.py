"""Waiting on conditions with deadlines: a test must be able to fail, never sleep and hope."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from textual.pilot import Pilot

T = TypeVar("T")

Message = str | Callable[[], str]
"""A failure message, or a callable evaluated only on failure (for state dumps)."""


def _text(message: Message) -> str:
    return message() if callable(message) else message


def wait_until(
    predicate: Callable[[], Any],
    timeout: float,
    message: Message = "condition not met",
    *,
    interval: float = 0.05,
) -> Any:
    """Poll `predicate` until it returns a truthy value (returned) or `timeout` s pass.

    An exception raised by the predicate counts as "not yet"; the last one is shown if the
    deadline passes.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
        except Exception as e:
            last_error = e
        else:
            if result:
                return result
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            pytest.fail(f"timed out after {timeout:g} s: {_text(message)}{detail}")
        time.sleep(interval)


def stays(pred: Callable[[], object], duration: float, message: str = "") -> None:
    """Assert ``pred`` holds for all of ``duration``: the one bounded wait a negative check
    (nothing restarts, nothing is reported) cannot avoid. Fails as soon as it breaks."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        assert pred(), message or f"{pred} stopped holding"
        time.sleep(0.01)
    assert pred(), message or f"{pred} stopped holding"


def run_async(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run `coro` on a new event loop; fail the test if it takes longer than `timeout` s
    (the tests do not use pytest-asyncio)."""

    async def bounded() -> T:
        try:
            return await asyncio.wait_for(coro, timeout)
        except TimeoutError:
            pytest.fail(f"coroutine did not finish within {timeout:g} s")

    return asyncio.run(bounded())


async def wait_for(
    pilot: Pilot[None],
    predicate: Callable[[], object],
    timeout: float,
    message: Message = "condition not met",
) -> object:
    """Run a Textual app until `predicate()` is truthy (returned) or fail after `timeout` s.

    The app keeps running between checks (pilot.pause), so feed updates get applied."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s: {_text(message)}")
        await pilot.pause(0.1)
