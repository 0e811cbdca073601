"""`harmony sim`: chaos simulations (filled in by the simulation work)."""

from __future__ import annotations

import argparse


def add_sim_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `harmony sim` (not yet available)."""
