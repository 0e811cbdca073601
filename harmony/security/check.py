"""What a site's `[security]` must agree with: its roster and its own material.

`load_config` only checks that the files are readable; these are the facts a person gets
wrong when copying material between machines (a stale roster, another mesh's directory, a
seed from before a rotation). `harmony config check` reports them.
"""

from __future__ import annotations

from pathlib import Path

from harmony.config import ROSTER_FILE, ConfigError, SiteConfig
from harmony.security.identity import public_key_of, site_identity
from harmony.security.roster import load_roster


def security_problems(cfg: SiteConfig) -> list[tuple[str, str]]:
    """(field, reason) of each disagreement; empty when the site's material is coherent."""
    sec = cfg.security
    if sec is None or not sec.dir:
        return []
    roster_file = Path(sec.dir) / ROSTER_FILE
    try:
        roster = load_roster(roster_file)
        ident = site_identity(sec.dir, cfg.site)
        key = public_key_of(ident.seed_file)
    except ConfigError as e:
        return [("security.dir", str(e))]
    except Exception as e:  # an nkey seed that does not decode
        return [("security.dir", f"{sec.dir}/sites/{cfg.site}/nkey.seed: {e!r}")]
    problems = []
    if roster.mesh != cfg.mesh:
        problems.append(
            ("security.dir", f"{roster_file} is mesh {roster.mesh!r}, not {cfg.mesh!r}")
        )
    if ident.mesh != cfg.mesh or ident.name != cfg.site or ident.role != "site":
        problems.append(
            (
                "security.dir",
                f"{ident.dir} holds {ident.role} {ident.name!r} of mesh {ident.mesh!r}",
            )
        )
    listed = roster.sites.get(cfg.site)
    if listed is None:
        problems.append(("security.dir", f"{roster_file} has no site {cfg.site!r}"))
    elif listed != key:
        problems.append(
            (
                "security.dir",
                f"{ident.seed_file} is not the key {roster_file} lists for {cfg.site!r} "
                "(rotated elsewhere? copy the new roster and sites/<site>/ here)",
            )
        )
    return problems


def describe(cfg: SiteConfig) -> str:
    """One line for a summary: how this site is protected."""
    sec = cfg.security
    if sec is not None and sec.dir:
        return f"security: mutual TLS + nkey, permissions from {sec.dir}/roster.toml"
    return "security: NONE (plaintext, anonymous; insecure)"
