"""`harmony mesh`: create and change a mesh's keys (init, add-site, add-identity, rotate)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harmony.config import ConfigError
from harmony.security.material import MaterialError, MeshDir, init_mesh

EXIT_OK, EXIT_CONFIG = 0, 2

MESH_HELP = """\
Create and change a mesh's trust material: a mesh CA (signs the sites' certificates; only
these may open routes), an identities CA (signs operators' and readers' certificates), an
nkey per site and identity, and roster.toml (their public keys, read by every server).

  harmony mesh init DIR --mesh NAME --site a --site b=10.0.0.2,b.example --operator admin
  harmony mesh add-site DIR c --host 10.0.0.3
  harmony mesh add-identity DIR watcher --role reader
  harmony mesh rotate DIR b

A site needs DIR/roster.toml and DIR/sites/<site>/ (copy them there; never the CA keys) and
in its config:  [security]  dir = "DIR".  Operators' tools take --identity DIR/identities/NAME.
Every running server rereads roster.toml when it changes: after add-site, add-identity or
rotate, copy the new roster.toml to every site (and the rotated directory to its owner).
"""


def _err(msg: str) -> None:
    print(f"harmony: {msg}", file=sys.stderr)


def _site_arg(text: str) -> tuple[str, list[str]]:
    name, _, hosts = text.partition("=")
    return name, [h for h in hosts.split(",") if h]


def cmd_init(args: argparse.Namespace) -> int:
    sites = dict(_site_arg(s) for s in args.site)
    md = init_mesh(args.dir, args.mesh, sites, args.operator or [], args.reader or [])
    root = md.path
    print(f"mesh {args.mesh!r}: trust material in {root}")
    for s, hosts in sites.items():
        names = ", ".join([*hosts, "127.0.0.1", "::1", "localhost"])
        print(f"  site {s}: {root / 'sites' / s} (certificate for {names})")
    for name in [*(args.operator or []), *(args.reader or [])]:
        print(f"  identity {name}: {root / 'identities' / name}")
    print(f"  roster: {md.roster_file} (public keys; every site needs a copy)")
    print(
        f"KEEP {root / 'ca.key'} AND {root / 'identities-ca.key'} OFFLINE: whoever holds "
        "them can make sites and operators of this mesh. They are needed only to add or "
        "rotate a site or identity."
    )
    print(f'site configs: [security] dir = "{root}"')
    return EXIT_OK


def cmd_add_site(args: argparse.Namespace) -> int:
    key = MeshDir(Path(args.dir)).add_site(args.name, args.host or [])
    print(f"site {args.name} added ({key}); copy {args.dir}/roster.toml to every site")
    return EXIT_OK


def cmd_add_identity(args: argparse.Namespace) -> int:
    key = MeshDir(Path(args.dir)).add_identity(args.name, args.role)
    print(f"{args.role} {args.name} added ({key}); copy {args.dir}/roster.toml to every site")
    return EXIT_OK


def cmd_rotate(args: argparse.Namespace) -> int:
    key = MeshDir(Path(args.dir)).rotate(args.name)
    print(
        f"{args.name}: new certificate and nkey ({key}); the old nkey is refused once every "
        f"server has the new {args.dir}/roster.toml"
    )
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    try:
        rc: int = args.mesh_fn(args)
    except (MaterialError, ConfigError) as e:
        _err(str(e))
        return EXIT_CONFIG
    return rc


def add_mesh_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    m = sub.add_parser(
        "mesh",
        help="create and change a mesh's keys (CA, certificates, nkeys, roster)",
        description=MESH_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    msub = m.add_subparsers(dest="mesh_command", metavar="SUBCOMMAND")
    i = msub.add_parser("init", help="create a mesh directory (refuses an existing one)")
    i.add_argument("dir", metavar="DIR")
    i.add_argument("--mesh", required=True, help="the mesh name")
    i.add_argument(
        "--site",
        action="append",
        required=True,
        metavar="NAME[=HOST,...]",
        help="a site, with the hosts/IPs its certificate names (repeatable)",
    )
    i.add_argument("--operator", action="append", metavar="NAME", help="an operator identity")
    i.add_argument("--reader", action="append", metavar="NAME", help="a read-only identity")
    i.set_defaults(mesh_fn=cmd_init)
    a = msub.add_parser("add-site", help="issue a new site's material, add it to the roster")
    a.add_argument("dir", metavar="DIR")
    a.add_argument("name", metavar="NAME")
    a.add_argument("--host", action="append", help="a host/IP the certificate names")
    a.set_defaults(mesh_fn=cmd_add_site)
    d = msub.add_parser("add-identity", help="issue an operator's or reader's material")
    d.add_argument("dir", metavar="DIR")
    d.add_argument("name", metavar="NAME")
    d.add_argument("--role", required=True, choices=("operator", "reader"))
    d.set_defaults(mesh_fn=cmd_add_identity)
    r = msub.add_parser("rotate", help="new certificate and nkey for a site or identity")
    r.add_argument("dir", metavar="DIR")
    r.add_argument("name", metavar="NAME")
    r.set_defaults(mesh_fn=cmd_rotate)
    m.set_defaults(fn=lambda args: run(args) if getattr(args, "mesh_fn", None) else _usage(m))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_CONFIG
