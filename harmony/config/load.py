"""Reading a site's TOML: decode with msgspec, validate, resolve paths against the file."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import msgspec

from harmony.config.base import ConfigError
from harmony.config.exposure import check_security_files
from harmony.config.site import SiteConfig
from harmony.config.topologies import TOPOLOGY_KINDS
from harmony.config.validate import validate
from harmony.strategies.names import RECONCILE_POLICIES, STRATEGY_NAMES

NAMED: dict[str, tuple[str, ...]] = {"strategy": STRATEGY_NAMES, "reconcile": RECONCILE_POLICIES}
"""Fields that hold one of a list of names: a refusal says which names are valid."""


def _field_of(msg: str) -> tuple[str, str]:
    """Split msgspec's "reason - at `$.a.b[0]`" into (field, reason)."""
    m = re.search(r" - at `\$\.?(.*)`$", msg)
    if not m:
        unknown = re.search(r"unknown field `([^`]*)`", msg)
        return (unknown.group(1) if unknown else "", msg)
    field, reason = m.group(1) or "(top level)", msg[: m.start()]
    names = NAMED.get(field.rsplit(".", 1)[-1])
    if names is not None and reason.startswith("Invalid enum value"):
        reason += f"; valid: {', '.join(names)}"
    if field.endswith("topology.kind") and reason.startswith("Invalid value"):
        reason += f"; valid: {', '.join(TOPOLOGY_KINDS)} (geo: `constraints` on any of them)"
    return field, reason


def parse_config(data: bytes | str, source: str | Path = "<string>") -> SiteConfig:
    """Decode and validate TOML text; relative paths (``data_dir``, ``security.dir``,
    ``price.hook``) are resolved against `source`'s folder."""
    try:
        cfg = msgspec.toml.decode(data, type=SiteConfig)
    except msgspec.ValidationError as e:
        field, reason = _field_of(str(e))
        raise ConfigError(source, field, reason) from None
    except msgspec.DecodeError as e:
        raise ConfigError(source, "", f"not valid TOML: {e}") from None
    validate(cfg, source)
    base = Path(source).parent if str(source) != "<string>" else Path.cwd()
    data_dir = Path(cfg.data_dir) if cfg.data_dir else Path("data") / cfg.site
    if not data_dir.is_absolute():
        data_dir = (base / data_dir).resolve()
    security = cfg.security
    if security is not None and security.dir:
        sec_dir = Path(security.dir)
        if not sec_dir.is_absolute():
            sec_dir = (base / sec_dir).resolve()
        security = msgspec.structs.replace(security, dir=str(sec_dir))
        check_security_files(security, cfg.site, source)
    price = cfg.price
    if price is not None and price.hook and not Path(price.hook).is_absolute():
        price = msgspec.structs.replace(price, hook=str((base / price.hook).resolve()))
    return msgspec.structs.replace(
        cfg, data_dir=str(data_dir), source=str(source), security=security, price=price
    )


def read_source(
    path: str | Path,
    error: Callable[[Path, str, str], Exception] = ConfigError,
    what: str = "",
) -> bytes:
    """The bytes of a file the agent or the simulator is configured by (site config, roster,
    scenario), or `error(path, "", "cannot read[ what]: why")`: one way to read them all."""
    p = Path(path)
    try:
        return p.read_bytes()
    except OSError as e:
        raise error(p, "", f"cannot read{' ' + what if what else ''}: {e.strerror or e}") from None


def load_config(path: str | Path) -> SiteConfig:
    return parse_config(read_source(path), Path(path))
