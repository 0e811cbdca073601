"""Where the runner starts and stops the process scanner of the ground-truth checks.

The scanner (`harmony.sim.scanner.Scanner(path, containments, period)`, a thread sampling
every process of every containment into ``scans.jsonl``) is built with the checks; this
hook starts it when that module is there and leaves the run to the copies' own records
when it is not.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

SCAN_PERIOD = 0.1
"""How often the scanner looks at every containment (exits it sees at once, by pidfd)."""


def start_scanner(workdir: Path, containments: dict[tuple[str, str], str]) -> Any:
    """A started scanner writing ``<workdir>/scans.jsonl``, or None without the module.
    `containments`: (site, workload) -> containment id. Start it before the sites."""
    try:
        module = importlib.import_module("harmony.sim.scanner")
    except ImportError:
        return None
    scanner = module.Scanner(workdir / "scans.jsonl", containments, SCAN_PERIOD)
    scanner.start()
    return scanner


def stop_scanner(scanner: Any) -> None:
    """Stop it (``stop`` or ``close``, whichever it has) and wait for its thread."""
    if scanner is None:
        return
    for name in ("stop", "close"):
        stop = getattr(scanner, name, None)
        if callable(stop):
            stop()
            break
    join = getattr(scanner, "join", None)
    if callable(join):
        join(10)
