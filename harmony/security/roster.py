"""The roster: who may connect to a mesh's servers, by nkey public key, and as what.

One TOML file per mesh (``roster.toml`` in the mesh directory), the same on every site. It
holds only public keys, so it is not secret; every site's server reads it to build its
authorization block, and rereads it when it changes (rotation, a new site)::

    mesh = "demo"

    [sites]
    a = "UAB..."            # the site's nkey public key

    [identities.admin]
    nkey = "UCD..."
    role = "operator"       # or "reader"
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Literal

import msgspec
import nkeys
import tomli_w

from harmony.config import NAME_RE, ROSTER_FILE, ConfigError, read_source

Role = Literal["operator", "reader"]
ROLES: tuple[Role, ...] = ("operator", "reader")
__all__ = ["ROSTER_FILE", "Roster", "dump_roster", "load_roster", "parse_roster"]


class IdentityEntry(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    nkey: str
    role: Role


class Roster(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    mesh: str
    sites: dict[str, str] = {}
    identities: dict[str, IdentityEntry] = {}


class _RawRoster(msgspec.Struct, forbid_unknown_fields=True):
    """The roster before its identities are checked one by one (so an error names one)."""

    mesh: str
    sites: dict[str, str] = {}
    identities: dict[str, dict[str, object]] = {}


def valid_user_key(key: str) -> bool:
    """Whether `key` is an nkey *user* public key (``U...``, checksum intact)."""
    if not key.startswith("U") or not key.isalnum():
        return False
    try:
        raw = base64.b32decode(key + "=" * (-len(key) % 8))
    except (binascii.Error, ValueError):
        return False
    if len(raw) != 35 or raw[0] != nkeys.PREFIX_BYTE_USER:
        return False
    crc: int = nkeys.crc16(bytearray(raw[:-2]))
    return int.from_bytes(raw[-2:], "little") == crc


def _field(msg: str) -> tuple[str, str]:
    import re

    m = re.search(r" - at `\$\.?(.*)`$", msg)
    return (m.group(1), msg[: m.start()]) if m else ("", msg)


def parse_roster(data: bytes | str, source: str | Path = "<string>") -> Roster:
    try:
        raw = msgspec.toml.decode(data, type=_RawRoster)
    except msgspec.ValidationError as e:
        raise ConfigError(source, *_field(str(e))) from None
    except msgspec.DecodeError as e:
        raise ConfigError(source, "", f"not valid TOML: {e}") from None
    identities = {}
    for name, fields in raw.identities.items():
        try:
            identities[name] = msgspec.convert(fields, IdentityEntry)
        except msgspec.ValidationError as e:
            field, reason = _field(str(e))
            raise ConfigError(source, f"identities.{name}.{field}".rstrip("."), reason) from None
    roster = Roster(mesh=raw.mesh, sites=raw.sites, identities=identities)
    check(roster, source)
    return roster


def check(roster: Roster, source: str | Path) -> None:
    """Names are subject tokens and keys must be user nkeys, each used once."""
    if not NAME_RE.match(roster.mesh):
        raise ConfigError(source, "mesh", f"{roster.mesh!r} is not a valid name")
    seen: dict[str, str] = {}
    entries = [(f"sites.{n}", n, k) for n, k in roster.sites.items()]
    entries += [(f"identities.{n}.nkey", n, e.nkey) for n, e in roster.identities.items()]
    for field, name, key in entries:
        if not NAME_RE.match(name):
            raise ConfigError(source, field, f"{name!r} is not a valid name")
        if not valid_user_key(key):
            raise ConfigError(source, field, f"{key!r} is not an nkey user public key (U...)")
        if key in seen:
            raise ConfigError(source, field, f"the same key as {seen[key]}")
        seen[key] = field


def load_roster(path: str | Path) -> Roster:
    return parse_roster(read_source(path, what="the roster"), Path(path))


def dump_roster(roster: Roster) -> str:
    data = msgspec.to_builtins(roster)
    return "# The mesh's roster: public keys only (not secret). Same file on every site.\n" + (
        tomli_w.dumps(data)
    )
