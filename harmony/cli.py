"""`harmony`: the command line.

Exit codes scripts can rely on are in `harmony.exits`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from harmony import interrupts
from harmony.exits import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    err,
)
from harmony.logs import add_log_format_argument, setup_logging

DESCRIPTION = """\
Harmony Mesh keeps workloads running across independent sites. Each site runs one agent;
agents coordinate through a NATS JetStream mesh.

commands:
  agent    run this site's agent (the long-lived process of a site)
  config   check site configuration files without starting anything
  status   print a mesh's state: every site's actor tree, or a summary of a large mesh
  tui      the interactive view of a mesh: live actor tree, events, operator actions
  sim      run chaos simulations: real sites on this machine, faults, checked histories
  demo     start a 3-site mesh on this machine and open the TUI on it
  mesh     create and change a mesh's keys: CAs, certificates, nkeys, the roster
  unit     print the systemd service unit that runs a site's agent

exit codes: 0 ok, 1 failure, 2 bad usage or config, 3 mesh unreachable, 130 interrupted
"""


# ---------------------------------------------------------------------------- agent
def cmd_agent(args: argparse.Namespace) -> int:
    import msgspec

    from harmony.actors.runtime import Agent, MeshDisagrees
    from harmony.config import ConfigError, load_config, validate
    from harmony.mesh.connection import MeshUnavailable
    from harmony.mesh.server import ServerStartError

    try:
        cfg = load_config(args.config)
        if args.witness and not cfg.witness:
            cfg = msgspec.structs.replace(cfg, witness=True)
            validate(cfg, args.config)
    except ConfigError as e:
        err(f"invalid configuration: {e}")
        return EXIT_CONFIG
    from harmony.security.check import security_problems

    keys = security_problems(cfg)  # a stale roster or seed: refused by our own server
    if keys:
        for field, reason in keys:
            err(f"invalid configuration: {args.config}: {field}: {reason}")
        return EXIT_CONFIG
    setup_logging(args.log_level, args.log_format, site=cfg.site)
    agent = Agent(cfg)
    stop_signal: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stop_signal.append(signum)
        agent.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        agent.start(connect_timeout=args.connect_timeout)
        if args.ready_file:
            Path(args.ready_file).write_text(f"{os.getpid()}\n")
        while not agent.wait(0.5):
            pass
    except MeshDisagrees as e:
        err(f"refusing to start: {e}")
        agent.stop()
        return _leave(EXIT_CONFIG)
    except ConfigError as e:  # found at start, e.g. a data_dir owned by another user
        err(f"invalid configuration: {e}")
        agent.stop()
        return _leave(EXIT_CONFIG)
    except ServerStartError as e:
        err(f"embedded nats-server did not start: {e}")
        agent.stop()
        return _leave(EXIT_UNREACHABLE)
    except MeshUnavailable as e:
        err(str(e))
        agent.stop()
        return _leave(EXIT_UNREACHABLE)
    agent.stop()
    if agent.failure:
        err(f"agent failed: {agent.failure}")
        return _leave(EXIT_FAILURE)
    return _leave(EXIT_OK)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_CONFIG


def _leave(code: int, wait: float = 10.0) -> int:
    """Make sure the agent process really ends. Pykka actor threads are not daemons: an
    actor that outlived the tree's stop (a stop that timed out under load, a root that died
    first) would keep the process alive after `main` returned, heartbeating for a site that
    is shutting down. Stop whatever actor is left; exit hard if one still does not stop."""
    import time

    import pykka

    pykka.ActorRegistry.stop_all(block=False)
    deadline = time.monotonic() + wait
    while pykka.ActorRegistry.get_all() and time.monotonic() < deadline:
        time.sleep(0.05)
    left = pykka.ActorRegistry.get_all()
    if left:
        names = ", ".join(sorted({ref.actor_class.__name__ for ref in left}))
        logging.getLogger("harmony.agent").error(
            "%d actors still running %g s after stop, exiting anyway: %s", len(left), wait, names
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def cmd_status(args: argparse.Namespace) -> int:
    from harmony.status import cmd_status as status

    return status(args)


IDENTITY_HELP = (
    "on a secure mesh: who to connect as, an identity directory (DIR/identities/NAME of "
    "`harmony mesh init`); default: the site identity of --config"
)


# ---------------------------------------------------------------------------- config
def cmd_config_check(args: argparse.Namespace) -> int:
    from harmony.config_check import check, mesh_summary, summary

    report = check(args.files)
    if report.problems:
        for problem in report.problems:
            err(f"config check: {problem}")
        bad = len(report.problems)
        err(f"config check: {bad} problem{'s' if bad > 1 else ''}; nothing was started")
        return EXIT_CONFIG
    for path, cfg in report.configs.items():
        print("\n".join(summary(path, cfg)))
    if len(report.configs) > 1:
        print(mesh_summary(report.configs))
    for note in report.notes:
        print(f"note: {note}")
    return EXIT_OK


CONFIG_CHECK_HELP = """\
Validate site configuration files without starting anything (no server, no agent, no
workload). Each file is checked as `harmony agent` would load it: TOML syntax, known fields
and types, names, ports, timings, and, when the site runs absolute-consistency workloads,
the lease safety inequality

  fence_margin > stop_grace + fence_slack + clock allowance (2 x drift x lease_ttl + clock_skew)

(fence_slack and the clock drift rate are fixed allowances; the summary shows their values).

With several files (the sites of one mesh), also what they must agree on: one mesh name, one
lease_ttl, clock_skew and lease bucket replica count among the sites that hold leases, the
same strategy and topology for a workload wherever it is configured (constraints compared by
meaning), and every site of a workload's topology whose file is given configures that workload.

Topologies, from the files given: enough eligible sites (meeting the constraints, with room)
for a horizontal workload's replicas, or for one copy; no constraint or spread_label naming a
label no given site has; a priced eligible site for a cost workload; a price hook that is an
executable file. What depends on a site whose file is not given is a note, not a problem.

exit codes: 0 every file is valid (a short summary of each is printed),
            2 a problem (each one printed to stderr as FILE: FIELD: REASON)

example: harmony config check sites/*.toml
"""


# ---------------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    from harmony.sim.demo import run_demo

    return run_demo(sites=args.sites, workdir=args.dir, duration=args.duration)


# ---------------------------------------------------------------------------- unit
def cmd_unit(args: argparse.Namespace) -> int:
    from harmony.config import ConfigError
    from harmony.unit import check_user, unit_for

    if args.user is not None:
        problem = check_user(args.user)
        if problem:
            err(f"--user: {problem}")
            return EXIT_CONFIG
    try:
        text = unit_for(args.config, user=args.user)
    except ConfigError as e:
        err(f"invalid configuration: {e}")
        return EXIT_CONFIG
    sys.stdout.write(text)
    return EXIT_OK


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("harmony-mesh")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="harmony", description=DESCRIPTION, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--version", action="version", version=f"harmony {package_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    a = sub.add_parser(
        "agent",
        help="run this site's agent",
        description="Run the agent of one site: its embedded nats-server (unless the config "
        "says external), its actor tree and its workloads, until SIGTERM or Ctrl-C.",
    )
    a.add_argument("--config", "-c", required=True, help="the site's TOML configuration file")
    a.add_argument("--witness", action="store_true", help="run as a witness (NATS vote only)")
    a.add_argument("--log-level", default="info", help="debug, info, warning, error")
    add_log_format_argument(a)
    a.add_argument(
        "--connect-timeout",
        type=float,
        default=30.0,
        help="give up (exit 3) if NATS is not reachable within this many seconds at start",
    )
    a.add_argument("--ready-file", help="write the agent's pid here once it is up (for scripts)")
    a.set_defaults(fn=cmd_agent)

    c = sub.add_parser(
        "config",
        help="check site configuration files",
        description="Work with site configuration files. See `harmony config check --help`.",
    )
    csub = c.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    cc = csub.add_parser(
        "check",
        help="validate site configs without starting anything",
        description=CONFIG_CHECK_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cc.add_argument("files", nargs="+", metavar="FILE", help="site configuration (TOML) files")
    cc.set_defaults(fn=cmd_config_check)
    c.set_defaults(fn=lambda _args: _usage(c))

    s = sub.add_parser(
        "status",
        help="print the state of a mesh: every site's actor tree, or a summary",
        description="Up to 10 sites: ask every site for its actor tree and print it. A larger "
        "mesh: a summary first (sites by state, workloads by phase, what is unhealthy) from "
        "the sites' summaries; --site, --workload and --all for details. Exit 0 when every "
        "known site answered (or wrote a fresh summary), 1 when some did not, 3 when NATS is "
        "unreachable.",
    )
    s.add_argument("--config", "-c", help="a site config: use its mesh name and servers")
    s.add_argument("--server", action="append", help="NATS URL (repeatable), with --mesh")
    s.add_argument("--mesh", help="mesh name, with --server")
    s.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for answers")
    s.add_argument("--identity", metavar="DIR", help=IDENTITY_HELP)
    s.add_argument("--json", action="store_true", help="print snapshots (summaries) as JSON")
    view = s.add_mutually_exclusive_group()
    view.add_argument("--site", metavar="SITE", help="one site in detail (its actor tree)")
    view.add_argument("--workload", metavar="NAME", help="one workload on every site it is on")
    view.add_argument(
        "--all", action="store_true", help="every site's actor tree, however large the mesh"
    )
    s.set_defaults(fn=cmd_status)

    d = sub.add_parser(
        "demo",
        help="run a mesh of local sites and watch it live",
        description="Start a mesh of sites on this machine (each an agent with its embedded "
        "nats-server, clustered) with example workloads, and show the mesh's actor tree "
        "live until Ctrl-C. Every process it started is stopped on exit.",
    )
    d.add_argument("--sites", type=int, default=3, help="number of sites (default 3)")
    d.add_argument("--dir", help="working directory (default: a new temporary one)")
    d.add_argument("--duration", type=float, default=0.0, help="stop after N s (0: Ctrl-C)")
    d.set_defaults(fn=cmd_demo)

    u = sub.add_parser(
        "unit",
        help="print the systemd service unit of a site's agent",
        description="Print a systemd service unit that runs this site's agent with this "
        "installation of harmony: restart on failure (not on a refused configuration), a stop "
        "that leaves the fencing to the agent (KillMode=mixed, a TimeoutStopSec derived from "
        "the config's timings), and sandboxing the drivers tolerate. The unit explains each "
        "choice in comments. Exit 2 if the config is invalid.",
        epilog="example: harmony unit --config /etc/harmony/site.toml "
        "| sudo tee /etc/systemd/system/harmony-MESH-SITE.service",
    )
    u.add_argument("--config", "-c", required=True, help="the site's TOML configuration file")
    u.add_argument(
        "--user",
        help="run the agent as this user (default: the owner of the data directory, or of "
        "the config file if the data directory does not exist yet)",
    )
    u.set_defaults(fn=cmd_unit)

    from harmony.security.cli import add_mesh_parser
    from harmony.sim.cli import add_sim_parser
    from harmony.tui.cli import add_tui_parser

    add_mesh_parser(sub)
    add_sim_parser(sub)
    add_tui_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    # SIGTERM ends a command like Ctrl-C does: through its cleanup (`finally`), so a demo or
    # simulation stops every process it started. (`harmony agent` installs its own handler.)
    interrupts.install()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return EXIT_CONFIG
    try:
        rc: int = args.fn(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return EXIT_INTERRUPTED if interrupts.requested() is not None else rc


if __name__ == "__main__":
    sys.exit(main())
