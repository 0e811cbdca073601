"""`harmony tui`: the interactive view of a mesh (filled in by the TUI work)."""

from __future__ import annotations

import argparse


def add_tui_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `harmony tui` (not yet available)."""
