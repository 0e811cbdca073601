"""Placeholder, replaced by the container backend."""

from __future__ import annotations

from collections.abc import Sequence

from harmony.sim.scenario import Scenario, Step


def unavailable_reason(scenario: Scenario, steps: Sequence[Step] | None) -> str:
    return "not implemented yet"


class ContainerBackend:
    def __init__(self, *a: object, **k: object) -> None:
        raise NotImplementedError
