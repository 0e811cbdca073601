"""A simulated site's price hook: a script printing a file that `set-price` steps rewrite,
as a spot-price script prints the market's price (cost topologies read it)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path


def price_file(workdir: Path, site: str) -> Path:
    """What a site's price hook prints (`set-price` rewrites it)."""
    return workdir / "prices" / f"{site}.price"


def write_price(workdir: Path, site: str, price: float) -> None:
    """Atomically: a hook never reads half a number."""
    path = price_file(workdir, site)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{price:g}\n")
    os.replace(tmp, path)


def price_hook(workdir: Path, site: str) -> Path:
    """A price hook that prints the site's price file, as a spot-price script would."""
    hook = workdir / "prices" / f"{site}.sh"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text(f"#!/bin/sh\nexec cat {shlex.quote(str(price_file(workdir, site)))}\n")
    hook.chmod(0o755)
    return hook
