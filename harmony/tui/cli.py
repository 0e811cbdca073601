"""`harmony tui`: the interactive view of a mesh; and the TUI switch of `harmony demo`."""

from __future__ import annotations

import argparse

EXIT_OK, EXIT_CONFIG = 0, 2


def add_tui_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `harmony tui`, and make `harmony demo` open the TUI (`--no-tui`: the plain
    Rich view). The demo parser is made in harmony/cli.py; we only add our flag to it."""
    t = sub.add_parser(
        "tui",
        help="the interactive live view of a mesh",
        description="Connect to any NATS server of a mesh and show every site's actor tree "
        "live, with a detail pane, the mesh's event log, and actions (stop, start, fence, "
        "move a workload; drain a site). Press ? inside for the keys.",
    )
    t.add_argument("--config", "-c", help="a site config: use its mesh name and servers")
    t.add_argument("--server", action="append", help="NATS URL (repeatable), with --mesh")
    t.add_argument("--mesh", help="mesh name, with --server")
    t.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    t.add_argument(
        "--identity",
        metavar="DIR",
        help="on a secure mesh: an identity directory (DIR/identities/NAME); actions need "
        "an operator's. Default: the site identity of --config (watch only)",
    )
    t.set_defaults(fn=cmd_tui)
    demo = sub.choices.get("demo")
    if demo is not None:
        demo.add_argument(
            "--no-tui", action="store_true", help="the plain live view instead of the TUI"
        )
        demo.set_defaults(fn=cmd_demo)


def cmd_tui(args: argparse.Namespace) -> int:
    import sys

    from harmony.client import mesh_identity, mesh_target
    from harmony.config import ConfigError
    from harmony.tui.app import HarmonyApp, route_logging
    from harmony.tui.feed import MeshFeed

    try:
        mesh, servers = mesh_target(args.config, args.server, args.mesh)
        identity = mesh_identity(args.config, args.identity)
    except (ConfigError, ValueError) as e:
        print(f"harmony: {e}", file=sys.stderr)
        return EXIT_CONFIG
    route_logging()
    HarmonyApp(MeshFeed(servers, mesh, interval=args.interval, identity=identity)).run()
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from harmony.tui.demo import run_demo_tui

    return run_demo_tui(args.sites, args.dir, args.duration, tui=not args.no_tui)
