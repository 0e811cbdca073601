"""``[security]`` and ``[metrics]``: what the site exposes, and the trust material it reads."""

from __future__ import annotations

from pathlib import Path

from harmony.config.base import Base, ConfigError


class SecurityConfig(Base):
    """``[security]``: the site's trust material (see `harmony mesh init`).

    `dir` is a mesh directory (relative: from the config file's folder) holding at least
    ``roster.toml`` and ``sites/<site>/``. Without a ``[security]`` section, or with
    ``insecure = true`` and no `dir`, the site runs plaintext and anonymous: allowed only
    when `nats.host` is loopback, unless `insecure` says so.
    """

    dir: str = ""
    insecure: bool = False


class MetricsConfig(Base):
    """``[metrics]``: where the agent serves Prometheus metrics (`harmony.actors.metrics`).
    Beyond loopback it serves them over mutual TLS (the site's certificate; a scraper needs
    one of the mesh's), so a non-loopback host needs ``[security]`` or ``insecure``."""

    host: str = "127.0.0.1"
    port: int = 9464
    """0: no metrics."""


ROSTER_FILE = "roster.toml"
"""The mesh directory's roster (see `harmony.security.roster`)."""
SECURITY_FILES: tuple[str, ...] = (
    ROSTER_FILE,
    *(f"sites/{{site}}/{f}" for f in ("identity.toml", "ca.pem", "clients-ca.pem")),
    *(f"sites/{{site}}/{f}" for f in ("cert.pem", "key.pem", "nkey.seed")),
)


def check_security_files(sec: SecurityConfig, site: str, source: str | Path) -> None:
    """Every file the site's server and connection read must be readable now: say which
    one is not, rather than fail later inside nats-server or TLS."""
    for name in SECURITY_FILES:
        f = Path(sec.dir) / name.format(site=site)
        try:
            with open(f, "rb"):
                pass
        except OSError as e:
            raise ConfigError(
                source, "security.dir", f"{f}: cannot read: {e.strerror or e}"
            ) from None


def is_loopback_host(host: str) -> bool:
    """Whether `host` names this machine's loopback only (what may run without TLS)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
