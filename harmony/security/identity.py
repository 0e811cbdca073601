"""The client side: who a connection is (a site or an identity) and how nats-py proves it.

An `Identity` is a directory of a mesh directory (``sites/<site>`` or ``identities/<name>``,
see `harmony.security.material`): the mesh CA to verify servers, a client certificate and
key for mutual TLS, an nkey seed for NATS authentication. It also fixes the connection's
inbox prefix, because a user may subscribe only to its own inbox subjects.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from harmony.config import ConfigError
from harmony.security.permissions import identity_inbox, js_inbox, site_inbox

FILES = ("ca.pem", "cert.pem", "key.pem", "nkey.seed")
SECRETS = ("key.pem", "nkey.seed")


class _IdentityFile(msgspec.Struct, frozen=True):
    mesh: str
    name: str
    role: str


@dataclass(frozen=True)
class Identity:
    mesh: str
    name: str
    role: str
    """"site", "operator" or "reader"."""
    dir: Path

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def cert_file(self) -> Path:
        return self.dir / "cert.pem"

    @property
    def key_file(self) -> Path:
        return self.dir / "key.pem"

    @property
    def seed_file(self) -> Path:
        return self.dir / "nkey.seed"

    @property
    def clients_ca_file(self) -> Path:
        """A site's: both CAs, whose certificates its server's client port accepts."""
        return self.dir / "clients-ca.pem"

    @property
    def inbox_prefix(self) -> str:
        if self.role == "site":
            return site_inbox(self.mesh, self.name)
        return identity_inbox(self.mesh, self.name)

    def ssl_context(self) -> ssl.SSLContext:
        """TLS 1.2+, the server verified against the mesh CA, our certificate presented."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx

    def connect_kwargs(self) -> dict[str, Any]:
        """Keywords for nats-py's `connect` (and `MeshConnection`). nats-py's own inboxes
        (JetStream API replies, KV watches) go under `inbox_prefix` + ``._js``, apart from
        the asks' inbox: an edge may answer asks, never JetStream requests (see
        `harmony.security.permissions`)."""
        return {
            "tls": self.ssl_context(),
            "nkeys_seed": str(self.seed_file),
            "inbox_prefix": js_inbox(self.inbox_prefix),
        }


def public_key_of(seed_file: Path) -> str:
    """The nkey public key of a seed file (``U...``)."""
    import nkeys

    kp = nkeys.from_seed(bytearray(seed_file.read_bytes().strip()))
    try:
        return str(kp.public_key.decode())
    finally:
        kp.wipe()


def load_identity(path: str | Path) -> Identity:
    """The identity in directory `path`; errors name the missing or unreadable file."""
    where = Path(path)
    meta = where / "identity.toml"
    try:
        info = msgspec.toml.decode(meta.read_bytes(), type=_IdentityFile)
    except OSError as e:
        raise ConfigError(
            meta, "", f"cannot read: {e.strerror or e} (not an identity dir?)"
        ) from None
    except msgspec.DecodeError as e:
        raise ConfigError(meta, "", str(e)) from None
    for name in FILES:
        f = where / name
        try:
            with open(f, "rb") as opened:
                mode = os.fstat(opened.fileno()).st_mode
        except OSError as e:
            raise ConfigError(f, "", f"cannot read: {e.strerror or e}") from None
        if name in SECRETS and mode & 0o077:
            # Like ssh: a secret others can read is no longer this identity's alone.
            raise ConfigError(f, "", f"is readable by others (mode {mode & 0o777:o}); chmod 600 it")
    return Identity(info.mesh, info.name, info.role, where)


def site_identity(mesh_dir: str | Path, site: str) -> Identity:
    return load_identity(Path(mesh_dir) / "sites" / site)
