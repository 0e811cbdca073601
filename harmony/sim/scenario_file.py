"""Reading a scenario file: TOML text to a typed, checked `Scenario`, or a `ScenarioError`.

Kept apart from the types (`harmony.sim.scenario`) and the checks (`harmony.sim.validation`)
so that both sit below it: the types know nothing of files, the checks nothing of TOML.
A refused file names the file, the field (dotted path) and, where it can be found, the TOML
line, before any process starts.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from harmony.config import read_source
from harmony.sim.horizontal import with_slots
from harmony.sim.scenario import Scenario
from harmony.sim.validation import first_problem


class ScenarioError(Exception):
    """A scenario file the simulation refuses to run; nothing was started."""

    def __init__(self, file: str | Path, field: str, reason: str, line: int | None = None) -> None:
        self.file, self.field, self.reason, self.line = str(file), field, reason, line
        where = f"{self.file}:{line}" if line else self.file
        super().__init__(f"{where}: {field}: {reason}" if field else f"{where}: {reason}")


def load_scenario(path: str | Path) -> Scenario:
    return parse_scenario(read_source(path, ScenarioError).decode(), Path(path))


def parse_scenario(text: str, source: str | Path = "<string>") -> Scenario:
    try:
        sc = msgspec.toml.decode(text, type=Scenario)
    except msgspec.ValidationError as e:
        field, reason = split_error(str(e))
        raise ScenarioError(source, field, reason, toml_line(text, field)) from None
    except msgspec.DecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise ScenarioError(
            source, "", f"not valid TOML: {e}", int(m.group(1)) if m else None
        ) from None
    sc = msgspec.structs.replace(sc, source=str(source))
    problem = first_problem(sc)
    if problem is not None:
        field, reason = problem
        raise ScenarioError(source, field, reason, toml_line(text, field))
    return with_slots(sc)  # judged by slots; the sites' configurations carry it as written


def split_error(msg: str) -> tuple[str, str]:
    """msgspec's "reason - at `$.a.b[0]`" as (field, reason)."""
    m = re.search(r" - at `\$\.?(.*)`$", msg)
    unknown = re.search(r"unknown field `([^`]*)`", msg)
    field = m.group(1) if m else ""
    if unknown:
        field = f"{field}.{unknown.group(1)}" if field else unknown.group(1)
    return field or "(top level)", msg[: m.start()] if m else msg


def toml_line(text: str, field: str) -> int | None:
    """Best effort: the 1-based line of `field` (``steps[2].groups[0]``) in the TOML text.

    Each ``name[i]`` segment that is an array of tables moves to the i-th ``[[name]]``
    header; a plain key moves to its first ``key =`` line (or ``[key]`` header) after that,
    within the current table. None when nothing matched.
    """
    lines = text.splitlines()
    pos, found = 0, None
    for part in field.split("."):
        m = re.fullmatch(r"([A-Za-z0-9_-]+)(?:\[(\d+)\])?(?:\[\d+\])*", part)
        if not m:
            break
        key, index = m.group(1), m.group(2)
        header = re.compile(rf"^\s*\[\[\s*{re.escape(key)}\s*\]\]")
        hits = [i for i, line in enumerate(lines) if i >= pos and header.match(line)]
        if index is not None and hits:
            if int(index) >= len(hits):
                break
            pos = found = hits[int(index)]
            continue
        assign = re.compile(rf"^\s*({re.escape(key)}\s*=|\[\s*{re.escape(key)}\s*\])")
        for i in range(pos, len(lines)):
            if assign.match(lines[i]):
                pos = found = i
                break
            if i > pos and lines[i].lstrip().startswith("["):
                break
        else:
            break
    return None if found is None else found + 1
