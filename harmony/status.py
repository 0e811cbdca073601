"""`harmony status`: the mesh as its operator asks for it.

Up to `SMALL_MESH` sites every site's actor tree, as it always was; above, a summary first
(from the sites bucket, one read however many sites), details on demand (`--site`,
`--workload`).
"""

from __future__ import annotations

import argparse
import logging
import sys

from harmony.exits import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_UNREACHABLE, err
from harmony.mesh.connection import MeshConnection
from harmony.mesh.summaries import Summary

SMALL_MESH = 10
"""Up to this many sites `harmony status` prints every site's actor tree, as it always did;
above, a summary first (the sites bucket), details on demand."""


def cmd_status(args: argparse.Namespace) -> int:
    from harmony.client import mesh_identity, mesh_target
    from harmony.config import ConfigError
    from harmony.mesh.connection import MeshConnection, MeshUnavailable

    try:
        mesh, servers = mesh_target(args.config, args.server, args.mesh)
        identity = mesh_identity(args.config, args.identity)
    except (ConfigError, ValueError) as e:
        err(str(e))
        return EXIT_CONFIG
    conn = MeshConnection(servers, "harmony-status", identity=identity).start()
    try:
        conn.wait_connected(args.timeout)
        return _view(conn, mesh, args)
    except MeshUnavailable as e:
        err(str(e))
        return EXIT_UNREACHABLE
    finally:
        conn.close()


def _view(conn: MeshConnection, mesh: str, args: argparse.Namespace) -> int:
    """Which view: one site, one workload, every site's tree (`--all`, or a small mesh), or
    the summary of a large one."""
    import msgspec
    from rich.console import Console

    from harmony.client import collect_snapshot, sites_of_workload
    from harmony.render import site_view, summary_view, workload_view

    if args.site:
        snap = collect_snapshot(conn, mesh, args.site, args.timeout)
        if snap is None:
            err(f"site {args.site!r} of mesh {mesh!r} did not answer within {args.timeout:g} s")
            return EXIT_FAILURE
        if args.json:
            sys.stdout.write(msgspec.json.encode(snap).decode() + "\n")
        else:
            Console().print(site_view(snap))
        return EXIT_OK
    found = {} if args.all else _summaries(conn, mesh, args.timeout)
    if args.workload:
        snaps = {}
        for site in sites_of_workload(found, args.workload):
            snap = collect_snapshot(conn, mesh, site, args.timeout)
            if snap is not None:
                snaps[site] = snap
        if not found:  # no summaries (an older mesh): ask every site, keep W's
            from harmony.client import collect_snapshots

            path = f"agent/workload/{args.workload}"
            every = collect_snapshots(conn, mesh, args.timeout)
            snaps = {s: v for s, v in every.items() if any(a.path == path for a in v.actors)}
        if args.json:
            sys.stdout.write(msgspec.json.encode(list(snaps.values())).decode() + "\n")
        else:
            Console().print(workload_view(args.workload, snaps))
        return EXIT_OK if snaps else EXIT_FAILURE
    if len(found) <= SMALL_MESH:
        return _full_status(conn, mesh, args)
    if args.json:
        rows = [msgspec.to_builtins(s.value) | {"age": round(s.age, 1)} for s in found.values()]
        sys.stdout.write(msgspec.json.encode(rows).decode() + "\n")
    else:
        Console().print(summary_view(mesh, found))
    return EXIT_FAILURE if any(s.stale for s in found.values()) else EXIT_OK


def _summaries(conn: MeshConnection, mesh: str, timeout: float) -> dict[str, Summary]:
    """The sites bucket's summaries; {} when it cannot be read (an older mesh, no JetStream):
    the caller then asks every site, as before."""
    from harmony.client import collect_summaries

    try:
        return collect_summaries(conn, mesh, min(timeout, 2.0))
    except Exception as e:  # the full view still works without the bucket
        logging.getLogger(__name__).debug("no site summaries: %s", e)
        return {}


def _full_status(conn: MeshConnection, mesh: str, args: argparse.Namespace) -> int:
    """Every site's actor tree (today's view)."""
    import msgspec
    from rich.console import Console

    from harmony.client import collect_snapshots
    from harmony.render import mesh_view

    snaps = collect_snapshots(conn, mesh, args.timeout)
    if args.json:
        sys.stdout.write(msgspec.json.encode(list(snaps.values())).decode() + "\n")
    else:
        Console().print(mesh_view(mesh, snaps))
    if not snaps:
        err(f"no site of mesh {mesh!r} answered within {args.timeout:g} s")
        return EXIT_FAILURE
    silent = {p.site for s in snaps.values() for p in s.peers if p.state == "silent"}
    return EXIT_FAILURE if silent - set(snaps) else EXIT_OK
