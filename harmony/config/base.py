"""What every part of a site configuration shares: the error it raises and the name rules.

A file is either fully valid or refused: `ConfigError` names the file, the field (as a
dotted path) and the reason, and the agent never starts half-configured.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
"""Mesh, site and workload names become NATS subject tokens and file names: keep them plain."""
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ConfigError(Exception):
    """A configuration file (or a value in it) that the agent refuses to run with."""

    def __init__(self, file: str | Path, field: str, reason: str) -> None:
        self.file = str(file)
        self.field = field
        self.reason = reason
        super().__init__(f"{self.file}: {field}: {reason}" if field else f"{self.file}: {reason}")


class Base(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Every table of a site config: unknown keys are errors, fields are named."""
