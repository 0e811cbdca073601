"""A mesh's trust material on disk: create it, add sites and identities, rotate them.

Layout of a mesh directory (keys 0600, directories 0700)::

    DIR/ca.pem  ca.key                  the mesh CA: signs sites' certificates (servers, routes)
    DIR/identities-ca.pem  .key         signs operators' and readers' client certificates
    DIR/roster.toml                     public nkeys of every site and identity (not secret)
    DIR/sites/<site>/                   what one site holds (copy it, with roster.toml, there)
        ca.pem clients-ca.pem cert.pem key.pem nkey.seed identity.toml
    DIR/identities/<name>/              what one operator or reader holds
        ca.pem cert.pem key.pem nkey.seed identity.toml

The CA keys sign new certificates only (init, add, rotate): keep them offline. A site's
directory holds the mesh CA (to verify servers and routes), ``clients-ca.pem`` (both CAs: who
may connect to its client port), its certificate, key and nkey seed; ``identity.toml`` says
whose it is (mesh, name, role, and for a site the hosts its certificate names).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import nkeys
import tomli_w

from harmony.config import NAME_RE, ROSTER_FILE
from harmony.guard import atomic_write
from harmony.security import ca
from harmony.security.roster import IdentityEntry, Role, Roster, dump_roster, load_roster

SITE_ROLE = "site"


class MaterialError(Exception):
    """The mesh directory cannot be created or changed as asked (the message says why)."""


class IdentityFile(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``identity.toml``: whose material a directory holds."""

    mesh: str
    name: str
    role: str
    """"site", "operator" or "reader"."""
    hosts: list[str] = []


def _write(path: Path, data: bytes, secret: bool) -> None:
    """Atomically (a server rereading the roster never sees half a file), never through a
    symlink; keys for their owner only."""
    atomic_write(path, data, 0o600 if secret else 0o644)


def _mkdir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def new_user_seed() -> bytes:
    return bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))


def public_key(seed: bytes) -> str:
    kp = nkeys.from_seed(bytearray(seed.strip()))
    try:
        return str(kp.public_key.decode())
    finally:
        kp.wipe()


@dataclass(frozen=True)
class MeshDir:
    """A mesh directory (see the module docstring)."""

    path: Path

    @property
    def roster_file(self) -> Path:
        return self.path / ROSTER_FILE

    def site_dir(self, site: str) -> Path:
        return self.path / "sites" / site

    def identity_dir(self, name: str) -> Path:
        return self.path / "identities" / name

    def roster(self) -> Roster:
        return load_roster(self.roster_file)

    def _ca(self, which: str) -> ca.Pem:
        cert, key = self.path / f"{which}.pem", self.path / f"{which}.key"
        try:
            return ca.Pem(cert.read_bytes(), key.read_bytes())
        except OSError as e:
            raise MaterialError(
                f"{e.filename}: cannot read the CA ({e.strerror}); it is needed to issue "
                "certificates (bring it back from where it is kept offline)"
            ) from None

    def _save_roster(self, roster: Roster) -> None:
        _write(self.roster_file, dump_roster(roster).encode(), secret=False)

    def _issue(self, where: Path, who: IdentityFile) -> str:
        """Write a new key, certificate and nkey seed into `where`; return the public nkey.
        Files are replaced one by one, the seed last of all."""
        _mkdir(where.parent)
        _mkdir(where)
        mesh_ca = self._ca("ca")
        server = who.role == SITE_ROLE
        signer = mesh_ca if server else self._ca("identities-ca")
        pem = ca.issue(signer, who.mesh, who.name, server=server, hosts=who.hosts)
        _write(where / "ca.pem", mesh_ca.cert, secret=False)
        if server:
            bundle = mesh_ca.cert + self._ca("identities-ca").cert
            _write(where / "clients-ca.pem", bundle, secret=False)
        _write(where / "identity.toml", tomli_w.dumps(msgspec.to_builtins(who)).encode(), False)
        _write(where / "key.pem", pem.key, secret=True)
        _write(where / "cert.pem", pem.cert, secret=False)
        seed = new_user_seed()
        _write(where / "nkey.seed", seed + b"\n", secret=True)
        return public_key(seed)

    def _taken(self, roster: Roster, name: str) -> None:
        if not NAME_RE.match(name):
            raise MaterialError(f"{name!r} is not a valid name (letters, digits, '-', '_')")
        if name in roster.sites or name in roster.identities:
            kind = "site" if name in roster.sites else "identity"
            raise MaterialError(f"{self.roster_file}: {name!r} is already a {kind} of the mesh")

    # ------------------------------------------------------------------ operations
    def add_site(self, site: str, hosts: Sequence[str] = ()) -> str:
        """Issue a site's material and add its key to the roster; return the key."""
        return self.add_sites({site: hosts})[site]

    def add_sites(self, sites: Mapping[str, Sequence[str]]) -> dict[str, str]:
        """`add_site` for many sites ({site: hosts}) with one read and one write of the
        roster (linear: a thousand sites in seconds). Sites issued before a failure are
        in the roster; the one that failed and those after it are not."""
        roster = self.roster()
        added: dict[str, str] = {}
        try:
            for site, hosts in sites.items():
                self._taken(roster, site)
                who = IdentityFile(roster.mesh, site, SITE_ROLE, list(hosts))
                added[site] = self._issue(self.site_dir(site), who)
        finally:
            if added:
                sites_now = {**roster.sites, **added}
                self._save_roster(msgspec.structs.replace(roster, sites=sites_now))
        return added

    def add_identity(self, name: str, role: Role) -> str:
        roster = self.roster()
        self._taken(roster, name)
        key = self._issue(self.identity_dir(name), IdentityFile(roster.mesh, name, role))
        ids = {**roster.identities, name: IdentityEntry(key, role)}
        self._save_roster(msgspec.structs.replace(roster, identities=ids))
        return key

    def rotate(self, name: str) -> str:
        """New key, certificate and nkey for a site or identity; the roster then names only
        the new key (the old seed is refused once each server reread the roster)."""
        roster = self.roster()
        if name in roster.sites:
            where = self.site_dir(name)
            old = read_identity_file(where / "identity.toml")
            key = self._issue(where, old)
            self._save_roster(msgspec.structs.replace(roster, sites={**roster.sites, name: key}))
            return key
        if name in roster.identities:
            entry = roster.identities[name]
            key = self._issue(self.identity_dir(name), IdentityFile(roster.mesh, name, entry.role))
            ids = {**roster.identities, name: IdentityEntry(key, entry.role)}
            self._save_roster(msgspec.structs.replace(roster, identities=ids))
            return key
        raise MaterialError(f"{self.roster_file}: no site or identity named {name!r}")


def read_identity_file(path: Path) -> IdentityFile:
    try:
        return msgspec.toml.decode(path.read_bytes(), type=IdentityFile)
    except OSError as e:
        raise MaterialError(f"{path}: cannot read: {e.strerror or e}") from None
    except msgspec.DecodeError as e:
        raise MaterialError(f"{path}: {e}") from None


def init_mesh(
    path: str | Path,
    mesh: str,
    sites: Mapping[str, Sequence[str]],
    operators: Sequence[str] = (),
    readers: Sequence[str] = (),
) -> MeshDir:
    """Create a mesh directory: both CAs, every site's and identity's material, the roster.
    Refuses a directory that already holds a mesh (or anything else)."""
    root = Path(path)
    names = [mesh, *sites, *operators, *readers]
    for name in names:
        if not NAME_RE.match(name):
            raise MaterialError(f"{name!r} is not a valid name (letters, digits, '-', '_')")
    if len(set(names[1:])) != len(names) - 1:
        raise MaterialError("a name is given twice (sites and identities share one namespace)")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise MaterialError(f"{root}: exists and is not an empty directory; refusing to overwrite")
    _mkdir(root)
    for which, what in (("ca", "mesh CA"), ("identities-ca", "identities CA")):
        pem = ca.new_ca(mesh, what)
        _write(root / f"{which}.key", pem.key, secret=True)
        _write(root / f"{which}.pem", pem.cert, secret=False)
    md = MeshDir(root)
    md._save_roster(Roster(mesh=mesh))
    md.add_sites(sites)
    for name in operators:
        md.add_identity(name, "operator")
    for name in readers:
        md.add_identity(name, "reader")
    return md
