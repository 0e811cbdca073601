"""Site labels and the constraints a workload puts on them (the ``geo`` part of issue 12).

A site advertises `SiteFacts`: its labels (``region``, ``jurisdiction``, ``provider``, free
keys), how many copies of one workload it takes (`capacity`), its price and whether it is
alive. A workload's config holds constraints as strings, parsed once by `parse_constraint`:

    jurisdiction in ["EU", "CH"]      provider != "x"
    region not in ["us-east"]          tier == "gold"

A site that lacks a constrained label satisfies no constraint on it (not even ``!=`` or
``not in``): where data may go is never decided by a missing fact. `eligible` applies
every constraint to every site and says, for each site left out, which constraint did it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

Op = Literal["in", "not in", "==", "!="]

# -- op -> (site's value, the constraint's values) -> satisfied? ------------------------------
CONSTRAINT_OPS: Final[Mapping[Op, Callable[[str, tuple[str, ...]], bool]]] = {
    "in": lambda value, values: value in values,
    "not in": lambda value, values: value not in values,
    "==": lambda value, values: value == values[0],
    "!=": lambda value, values: value != values[0],
}

_OPS: Final[Mapping[str, Op]] = {op: op for op in CONSTRAINT_OPS}
_KEY = r"(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)"
_STRING = r"\"[^\"]*\"|'[^']*'"
_LIST = re.compile(rf"^\s*{_KEY}\s+(?P<op>not\s+in|in)\s*\[(?P<items>.*)\]\s*$")
_COMPARE = re.compile(rf"^\s*{_KEY}\s*(?P<op>==|!=)\s*(?P<value>{_STRING})\s*$")
_ITEMS = re.compile(rf"^\s*(?:(?:{_STRING})\s*(?:,\s*(?:{_STRING})\s*)*)?$")
LABEL_KEY_PATTERN = r"\A[A-Za-z_][A-Za-z0-9_.-]{0,62}\Z"
"""A label key: what a constraint can name (`_KEY`), at most 63 characters."""
LABEL_VALUE_PATTERN = r"\A[^\x00-\x1f\x7f-\x9f\"']{0,128}\Z"
"""A label value: printable, no quote (a constraint quotes it), at most 128 characters."""
MAX_LABELS = 32
"""Labels a site carries; heartbeats, snapshots and summaries refuse more."""
SYNTAX = 'label in ["a", "b"], label not in ["a"], label == "a" or label != "a"'


class ConstraintError(ValueError):
    """A constraint string that does not parse, or names a label no site has."""


@dataclass(frozen=True, slots=True)
class SiteFacts:
    """What a site advertises about itself; `capacity`: copies of one workload it takes."""

    name: str
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    capacity: int = 1
    price: float | None = None
    alive: bool = True

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a site needs a name")
        if self.capacity < 0:
            raise ValueError(f"site {self.name}: capacity must be >= 0, not {self.capacity}")
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))


@dataclass(frozen=True, slots=True)
class Constraint:
    """``key op values``; `text` is how the config wrote it (quoted back in every reason)."""

    key: str
    op: Op
    values: tuple[str, ...]
    text: str

    @property
    def canonical(self) -> tuple[str, str, tuple[str, ...]]:
        """What the constraint means, whatever the spacing, quoting or order of its list."""
        values = self.values if self.op in ("==", "!=") else tuple(sorted(set(self.values)))
        return (self.key, self.op, values)

    def holds(self, site: SiteFacts) -> bool:
        value = site.labels.get(self.key)
        return value is not None and CONSTRAINT_OPS[self.op](value, self.values)

    def why_not(self, site: SiteFacts) -> str | None:
        """Why `site` breaks this constraint, or None when it satisfies it."""
        value = site.labels.get(self.key)
        if value is None:
            return f"site {site.name} has no label {self.key!r} (constraint {self.text})"
        if not CONSTRAINT_OPS[self.op](value, self.values):
            return f"site {site.name} has {self.key}={value!r}, outside {self.text}"
        return None


def _unquote(token: str) -> str:
    return token.strip()[1:-1]


def parse_constraint(text: str, known_labels: Collection[str] | None = None) -> Constraint:
    """The constraint `text` says; `known_labels` (the labels any site has), when given,
    turns a misspelt key into an error instead of a constraint no site can meet.

    Raises `ConstraintError` naming the text and what is wrong with it.
    """
    if m := _COMPARE.match(text):
        key, op = m["key"], m["op"]
        values: tuple[str, ...] = (_unquote(m["value"]),)
    elif m := _LIST.match(text):
        key, op = m["key"], " ".join(m["op"].split())
        items = m["items"]
        if not _ITEMS.match(items):
            raise ConstraintError(f"{text!r}: list items must be quoted strings: {SYNTAX}")
        values = tuple(_unquote(t) for t in re.findall(_STRING, items))
        if not values:
            raise ConstraintError(f"{text!r}: an empty list")
    else:
        raise ConstraintError(f"{text!r} is not a constraint; write {SYNTAX}")
    if known_labels is not None and key not in known_labels:
        known = ", ".join(sorted(known_labels)) or "none"
        raise ConstraintError(f"{text!r}: no site has a label {key!r} (labels: {known})")
    return Constraint(key, _OPS[op], values, text.strip())


def parse_constraints(
    texts: Iterable[str], known_labels: Collection[str] | None = None
) -> tuple[Constraint, ...]:
    return tuple(parse_constraint(t, known_labels) for t in texts)


def labels_problem(labels: Mapping[str, str]) -> tuple[str, str] | None:
    """(the offending key, why) when `labels` exceed what the wire carries, or None: a site
    whose labels its peers could not decode would look silent to them."""
    if len(labels) > MAX_LABELS:
        return "", f"{len(labels)} labels: at most {MAX_LABELS}"
    for key, value in labels.items():
        if not re.match(LABEL_KEY_PATTERN, key):
            return key, f"{key!r} is not a label key (a letter or _, then letters, digits, _.-)"
        if not re.match(LABEL_VALUE_PATTERN, value):
            return key, f"{value!r}: at most 128 printable characters, no quotes"
    return None


DIGEST_CHARS = 16


def constraints_digest(constraints: Iterable[Constraint]) -> str:
    """What `constraints` mean, as a short hex digest (order, spacing and quoting aside):
    sites compare it to see that they read the same constraints of a workload."""
    canon = sorted(c.canonical for c in constraints)
    return hashlib.sha256(repr(canon).encode()).hexdigest()[:DIGEST_CHARS]


def known_labels(sites: Iterable[SiteFacts]) -> frozenset[str]:
    """Every label key any of `sites` carries."""
    return frozenset(k for s in sites for k in s.labels)


def why_excluded(site: SiteFacts, constraints: Iterable[Constraint]) -> str | None:
    """The first constraint `site` breaks (as a reason), or None: the site is eligible."""
    for c in constraints:
        why = c.why_not(site)
        if why is not None:
            return why
    return None


def eligible(
    sites: Iterable[SiteFacts], constraints: Iterable[Constraint]
) -> tuple[tuple[SiteFacts, ...], Mapping[str, str]]:
    """(the sites meeting every constraint, in the given order; site -> why left out)."""
    constraints = tuple(constraints)
    kept: list[SiteFacts] = []
    excluded: dict[str, str] = {}
    for site in sites:
        why = why_excluded(site, constraints)
        if why is None:
            kept.append(site)
        else:
            excluded[site.name] = why
    return tuple(kept), MappingProxyType(excluded)
