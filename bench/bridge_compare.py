"""`bench/bridge.py --compare REV`: this tree against a git revision, rounds interleaved.

A refactor must not slow the bridge, and this machine is noisy: two runs taken minutes apart
differ more than most changes do. So both trees are measured in one run, round by round,
alternating which goes first: `git archive REV harmony` is exported into a temporary
directory next to a copy of this checkout's `harmony/` as it is at the start (so editing the
checkout meanwhile changes nothing), and each round is one `bench/bridge.py --rounds 1`
process (with its own nats-servers and site process, which inherits the environment) whose
``PYTHONPATH`` puts one of the two first. The benchmark script itself is this checkout's
for both, so both trees are measured the same way.

The table shows per measure the median over rounds for each tree (with the range), the
ratio of those medians (now / REV), and the median of the per-round-pair ratios: a pair ran
back to back, so that ratio sees the least of the machine's drift.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
HERE = "now"

# (key, label, higher is better)
MEASURES = [
    ("plain_ask_p50", "plain ask p50 (ms)", False),
    ("plain_ask_p99", "plain ask p99 (ms)", False),
    ("tls_ask_p50", "TLS ask p50 (ms)", False),
    ("tls_ask_p99", "TLS ask p99 (ms)", False),
    ("plain_ratio", "plain ask p50 / nats-py floor p50", False),
    ("tls_ratio", "TLS ask p50 / nats-py floor p50", False),
    ("local_ask_p50", "local Pykka ask p50 (ms)", False),
    ("plain_npy_p50", "floor: nats-py plain p50 (ms)", False),
    ("tls_npy_p50", "floor: nats-py TLS p50 (ms)", False),
    ("plain_tell_rate", "plain tell rate (msg/s)", True),
    ("tls_tell_rate", "TLS tell rate (msg/s)", True),
    ("plain_tell_local", "plain tells / local tells", True),
    ("tls_tell_local", "TLS tells / local tells", True),
    ("local_tell_rate", "local Pykka tell rate (msg/s)", True),
]


def export(rev: str, into: Path) -> str:
    """`harmony/` of `rev` under `into`; returns the full commit id."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit, "harmony"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return commit


def describe() -> str:
    """This checkout: its HEAD, and whether `harmony/` differs from it."""
    git = ["git", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "diff", "--quiet", "HEAD", "--", "harmony"]).returncode != 0
    return f"{head.stdout.strip()}{' + uncommitted changes' if dirty else ''}"


def one_round(tree: Path, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """One `bridge.py --rounds 1` process with `tree` first on its path; its JSON."""
    cmd = [
        sys.executable,
        str(Path(__file__).with_name("bridge.py")),
        "--rounds=1",
        f"--asks={args.asks}",
        f"--tells={args.tells}",
        f"--json={out}",
    ]
    if args.fast_paths is not None:
        cmd.append(f"--fast-paths={args.fast_paths}")
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"a round under {tree} failed (exit {proc.returncode})")
    return dict(json.loads(out.read_text()))


def derived(row: dict[str, float]) -> dict[str, float]:
    """A round's figures plus the ratios that cancel most of the machine's load."""
    out = dict(row)
    for m in ("plain", "tls"):
        out[f"{m}_ratio"] = row[f"{m}_ask_p50"] / row[f"{m}_npy_p50"]
        out[f"{m}_tell_local"] = row[f"{m}_tell_rate"] / row["local_tell_rate"]
    return out


def table(rev: str, rows: dict[str, list[dict[str, float]]]) -> Table:
    n = len(rows[HERE])
    t = Table(title=f"bridge: now vs {rev}, {n} interleaved round pairs; median (range)")
    for col in ("measure", rev, "now", "now/before (medians)", "now/before (pairs)"):
        t.add_column(col, justify="left" if col == "measure" else "right")
    for key, label, _higher in MEASURES:
        before = [r[key] for r in rows[rev]]
        after = [r[key] for r in rows[HERE]]
        fmt = ",.0f" if key.endswith("_rate") else ".3f"

        def cell(xs: list[float], fmt: str = fmt) -> str:
            med = format(statistics.median(xs), fmt)
            return f"{med}  ({format(min(xs), fmt)}-{format(max(xs), fmt)})"

        pairs = [a / b for a, b in zip(after, before, strict=True)]
        t.add_row(
            label,
            cell(before),
            cell(after),
            f"{statistics.median(after) / statistics.median(before):.2f}x",
            f"{statistics.median(pairs):.2f}x ({min(pairs):.2f}-{max(pairs):.2f})",
        )
    return t


def compare(args: argparse.Namespace, console: Console) -> int:
    load_before = os.getloadavg()
    rows: dict[str, list[dict[str, float]]] = {args.compare: [], HERE: []}
    where: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="harmony-bench-compare-") as tmp:
        old, now = Path(tmp) / "before", Path(tmp) / "now"
        old.mkdir()
        commit = export(args.compare, old)
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(REPO / "harmony", now / "harmony", ignore=ignore)
        trees = {args.compare: old, HERE: now}
        for r in range(args.rounds):
            order = [args.compare, HERE] if r % 2 == 0 else [HERE, args.compare]
            for name in order:
                t0 = time.monotonic()
                got = one_round(trees[name], args, Path(tmp) / f"{name}-{r}.json")
                where[name] = str(got.get("harmony", "?"))
                row = derived(got["rounds"][0])
                rows[name].append(row)
                console.log(
                    f"round {r + 1}/{args.rounds} {name}: ask p50 plain "
                    f"{row['plain_ask_p50']:.3f} TLS {row['tls_ask_p50']:.3f} ms, "
                    f"tells/local plain {row['plain_tell_local']:.2f} "
                    f"TLS {row['tls_tell_local']:.2f} ({time.monotonic() - t0:.0f} s, "
                    f"load {os.getloadavg()[0]:.2f})"
                )
    console.print(table(args.compare, rows))
    load_after = os.getloadavg()
    console.print(
        f"{args.compare} = {commit[:12]} (harmony from {where.get(args.compare)}), now = "
        f"{describe()} (harmony from {where.get(HERE)}); {args.rounds} rounds of "
        f"{args.asks} asks and {args.tells} tells each; {os.cpu_count()} CPUs, load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    if args.json is not None:
        args.json.write_text(json.dumps({"rev": commit, "rows": rows}, indent=2))
    return 0
