"""The command line both tether processes share (see `tether`): the arguments that say how
to fence and how to record it, defined once for the writer (`tether_args`) and the readers
(`add_tether_args` for an argparse parser, `quick_parse` for the keeper).

Kept apart from `tether` (the agent's side: dataclasses, pathlib, the deadline handoff) so
that a copy's keeper loads only this: one keeper runs per copy, and every module costs each.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not `typing`'s (see above)
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from os import PathLike
    from typing import Any

TETHER_FENCED = 87
"""Exit status of a tether that fenced its workload (or refused to start it)."""

Option = tuple[str, dict[str, object]]
"""An option as ``parser.add_argument(flag, **keywords)`` takes it."""

TETHER_OPTIONS: tuple[Option, ...] = (
    ("--grace", {"type": float, "default": 1.5, "help": "SIGTERM to SIGKILL, seconds"}),
    ("--journal", {"default": "", "help": "site journal for the tether-fenced event"}),
    ("--site", {"default": ""}),
    ("--workload", {"default": ""}),
    ("--incarnation", {"default": ""}),
)
"""The arguments of both tether processes (the keeper, `tether_main`, and the hooks
watcher, `hooks_watch`): the SIGTERM-to-SIGKILL grace, and the journal and names of the
`tether-fenced` event."""


def add_tether_args(parser: argparse.ArgumentParser) -> None:
    """Add `TETHER_OPTIONS` to `parser`. `tether_args` writes them."""
    for flag, keywords in TETHER_OPTIONS:
        parser.add_argument(flag, **keywords)  # type: ignore[arg-type]


def tether_args(
    grace: float, journal: str | PathLike[str] | None, *, site: str, workload: str, incarnation: str
) -> list[str]:
    """The arguments `add_tether_args` reads, for the argv of a keeper or a watcher."""
    argv = ["--grace", f"{grace:g}"]
    if journal is not None:
        argv += ["--journal", str(journal)]
    return [*argv, "--site", site, "--workload", workload, "--incarnation", incarnation]


class Args:
    """Parsed arguments, by attribute (as an ``argparse.Namespace``)."""

    def __init__(self, **values: object) -> None:
        self.__dict__.update(values)

    if TYPE_CHECKING:  # for mypy: the attributes are the options'

        def __getattr__(self, name: str) -> Any: ...

    def __repr__(self) -> str:
        return "Args(" + ", ".join(f"{k}={v!r}" for k, v in vars(self).items()) + ")"


def quick_parse(argv: Sequence[str], options: Sequence[Option]) -> Args | None:
    """Parse ``--flag value ... -- COMMAND...`` as a parser with `options` and a final
    ``command`` (REMAINDER) would, for the argv our own code writes; None for anything else
    (``--help``, an unknown or abbreviated flag, ``--flag=value``, a value that looks like an
    option, a bad number, a required flag missing, no ``--`` or no COMMAND): then the caller
    asks argparse, which parses it or gives its usual message."""
    spec = dict(options)
    values: dict[str, object] = {}
    i = 0
    while True:
        if i >= len(argv):
            return None
        flag = argv[i]
        if flag == "--":
            break
        keywords = spec.get(flag)
        if keywords is None or keywords.get("action") or i + 1 >= len(argv):
            return None
        raw = argv[i + 1]
        if raw.startswith("-"):
            return None
        convert = keywords.get("type", str)
        try:
            values[flag] = convert(raw)  # type: ignore[operator]
        except (TypeError, ValueError):
            return None
        i += 2
    command = list(argv[i + 1 :])
    if not command:
        return None
    for flag, keywords in options:
        if flag not in values:
            if keywords.get("required"):
                return None
            values[flag] = keywords.get("default")
    names = {flag[2:].replace("-", "_"): values[flag] for flag, _ in options}
    return Args(**names, command=command)
