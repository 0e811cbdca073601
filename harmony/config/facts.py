"""What a site advertises about itself: ``labels``, ``capacity`` and ``[price]``.

Labels are what workloads' constraints read (``jurisdiction in ["EU"]``) and what the
horizontal topology spreads over; they travel in heartbeats, so keys and values are plain
names (no spaces, quotes or subject wildcards) and there are at most `MAX_LABELS`.
"""

from __future__ import annotations

import math
import re

from harmony.config.base import Base

LABEL_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$")
"""A label's name: what a constraint can name (`harmony.strategies.labels`), bounded."""
LABEL_VALUE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
"""A label's value: a site name's characters, and '.' (``eu-west-1``, ``1.5``)."""
MAX_LABELS = 16


class PriceConfig(Base):
    """``[price]``: what running a workload here costs, for ``cost`` topologies: a fixed
    `value`, or a `hook` (an executable, relative: from the config file's folder) that
    prints the price and is run every `interval` seconds, as a spot-price script would."""

    value: float | None = None
    hook: str = ""
    interval: float = 60.0


def labels_problem(labels: dict[str, str]) -> tuple[str, str] | None:
    """(field, reason) of the first bad label, or None."""
    if len(labels) > MAX_LABELS:
        return "labels", f"{len(labels)} labels: at most {MAX_LABELS}"
    for key, value in labels.items():
        if not LABEL_KEY_RE.match(key):
            return "labels", (
                f"{key!r} is not a valid label name (a letter or '_', then letters, digits, "
                "'_', '-', '.'; at most 63)"
            )
        if not LABEL_VALUE_RE.match(value):
            return f"labels.{key}", (
                f"{value!r} is not a valid label value (letters, digits, '_', '-', '.'; at most 63)"
            )
    return None


def capacity_problem(capacity: int | None) -> tuple[str, str] | None:
    if capacity is not None and capacity <= 0:
        return "capacity", f"{capacity}: must be > 0 (leave it out: one copy of a workload)"
    return None


def price_problem(price: PriceConfig | None) -> tuple[str, str] | None:
    if price is None:
        return None
    if (price.value is None) == (not price.hook):
        return "price", "give exactly one of value (a fixed price) or hook (a command)"
    if price.value is not None and not (math.isfinite(price.value) and price.value >= 0):
        return "price.value", f"{price.value}: must be a number >= 0"
    if not (math.isfinite(price.interval) and price.interval > 0):
        return "price.interval", f"{price.interval}: must be a number of seconds > 0"
    return None
