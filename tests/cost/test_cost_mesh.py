"""cost on real processes: three sites whose price hooks print files this test rewrites, an
absolute-consistency ledger with topology ``cost`` over a, b, c.

It runs on the cheapest site (b), although a is first in the config. Prices that keep
crossing the threshold (c cheaper by more than min_saving, then not, each time for less than
`hold`) move nothing. A lasting saving moves it to c, no sooner than `hold` after the price
changed, gracefully: never two active copies, from the copies' own records and the process
table. A hook that prints garbage keeps its site's last good price and the journal says why;
`harmony status --workload ledger` shows the prices and why it runs where it runs.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
import pytest
from support.commands import harmony as run_harmony
from support.meshes import Watcher
from support.waiting import wait_until
from support.workloads import workload

from harmony.config import CostTopologyConfig, PriceConfig
from harmony.sim.launch import LocalMesh
from harmony.sim.scenario import SIM_TIMINGS

pytestmark = pytest.mark.mesh

SITES = ("a", "b", "c")
HOLD = 4.0
MIN_SAVING = 1.0
INTERVAL = 0.3
COST = "agent/workload/ledger/cost"


def harmony(*args: str) -> subprocess.CompletedProcess[str]:
    return run_harmony(*args, timeout=90, env={"COLUMNS": "400", "PATH": "/usr/bin:/bin"})


class Prices:
    """The files the sites' price hooks print."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def hook(self, site: str) -> str:
        path = self.root / f"{site}.sh"
        path.write_text(f"#!/bin/sh\nexec cat {self.root / site}\n")
        path.chmod(0o755)
        return str(path)

    def set(self, site: str, text: str) -> float:
        tmp = self.root / f"{site}.tmp"
        tmp.write_text(text + "\n")
        tmp.replace(self.root / site)
        return time.monotonic()


@contextmanager
def cost_mesh(tmp_path: Path, strategy: str) -> Iterator[tuple[Watcher, Prices]]:
    prices = Prices(tmp_path / "prices")
    for site, price in (("a", "5"), ("b", "2"), ("c", "4")):
        prices.set(site, price)
    ledger = workload("ledger", strategy, "a", ["b", "c"], tmp_path)
    topology = CostTopologyConfig(sites=list(SITES), min_saving=MIN_SAVING, hold=HOLD, cooldown=5.0)
    mesh = LocalMesh(
        tmp_path,
        mesh="cost",
        sites=SITES,
        timings=SIM_TIMINGS,
        workloads=[msgspec.structs.replace(ledger, topology=topology)],
        site_prices={s: PriceConfig(hook=prices.hook(s), interval=INTERVAL) for s in SITES},
    )
    try:
        mesh.write_configs()
        mesh.start(timeout=90)
        w = Watcher(mesh)
        yield w, prices
        w.close()
    finally:
        mesh.stop()


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[tuple[Watcher, Prices]]:
    with cost_mesh(tmp_path, "absolute-consistency") as found:
        yield found


def cost_detail(watch: Watcher, site: str) -> dict[str, str]:
    snap = watch.snaps().get(site)
    actor = next((a for a in snap.actors if a.path == COST), None) if snap else None
    return dict(actor.detail) if actor is not None else {}


def moves(watch: Watcher) -> list[tuple[str, float, str]]:
    return [(e.site, e.mono, e.reason) for e in watch.history() if e.kind == "cost-move"]


def test_the_ledger_runs_on_the_cheapest_and_moves_only_for_a_lasting_saving(
    mesh: tuple[Watcher, Prices],
) -> None:
    watch, prices = mesh
    # a is first in the config, b is the cheapest: a places it on b at once.
    watch.wait_runs_on("ledger", {"b"}, 60)
    wait_until(lambda: cost_detail(watch, "b").get("decision") == "stay", 20, message=watch.tail)
    assert cost_detail(watch, "b")["prices"] == "a=5 b=2 c=4"
    placed = moves(watch)
    assert [(s, r.split(":")[0]) for s, _, r in placed] == [("a", "not placed yet")], placed

    # Noise: c is cheaper by 1.1, then by 0.5, each for less than `hold`: no move.
    for _ in range(5):
        prices.set("c", "0.9")
        time.sleep(1.5)  # the noise itself: a price that holds for 1.5 s, less than `hold`
        prices.set("c", "1.5")
        time.sleep(1.5)
    assert moves(watch) == placed, moves(watch)
    assert set(watch.runners("ledger")) == {"b"}

    # A garbage price keeps the last good one, and the journal says why.
    prices.set("a", "cheap!")
    wait_until(
        lambda: any(
            e.kind == "price-hook-failed" and e.site == "a" and "not a number" in e.reason
            for e in watch.history()
        ),
        10,
        message=watch.tail,
    )
    assert "a=5 " in cost_detail(watch, "b")["prices"]

    # A lasting saving: c at 0.5 saves 1.5 > min_saving; the ledger moves after `hold`.
    changed = prices.set("c", "0.5")
    watch.wait_runs_on("ledger", {"c"}, HOLD + 40)
    [(site, at, reason)] = moves(watch)[1:]
    assert site == "b" and at >= changed + HOLD, (at - changed, reason)
    assert reason.startswith("saving held long enough: move gracefully: c at 0.5 saves 1.5")
    assert "stop-old on b; release on b; acquire on c" in reason
    # Gracefully: b stopped its copy before c started one, never two active copies (the
    # copies' own records and the process table), and the token grew.
    intervals = watch.assert_safe()
    # a, first in the config, ran it until every price was in and it placed it on b. (A
    # stalled machine may cost b a renewal: b fences and retakes it, a repeat merged here.)
    path = [
        s for j, s in enumerate(i.site for i in intervals) if j == 0 or intervals[j - 1].site != s
    ]
    assert path == ["a", "b", "c"], intervals
    assert "operator-move" in {e.kind for e in watch.history() if e.site == "b"}

    # status --workload shows the prices it decided from and why it runs where it runs. (c's
    # cost runner decides once it has seen its own copy run: until then it says who decides.)
    config = str(watch.mesh.procs["c"].config_path)

    def decided_on_c() -> dict | None:
        out = harmony("status", "--config", config, "--workload", "ledger", "--json")
        snaps = [s for s in json.loads(out.stdout or "[]") if s["site"] == "c"]
        found = [a for s in snaps for a in s["actors"] if a["path"] == COST]
        return found[0] if found and found[0]["detail"].get("decision") else None

    cost = wait_until(
        decided_on_c, 60, message="harmony status --workload ledger --json: c never decided"
    )
    assert cost["detail"]["prices"] == "a=5 b=2 c=0.5", cost
    assert cost["detail"]["decision"] == "stay", cost
    text = harmony("status", "--config", config, "--workload", "ledger").stdout
    assert "prices=a=5 b=2 c=0.5" in text, text
    assert "cost (decided on c): prices a=5 b=2 c=0.5; no site saves more than min_saving" in text


def test_split_brain_allowed_starts_the_new_copy_before_it_stops_the_old(tmp_path: Path) -> None:
    with cost_mesh(tmp_path, "split-brain-allowed") as (watch, _):
        watch.wait_runs_on("ledger", {"b"}, 60)
        truth, _ = watch.truth("ledger")
        # a's copy may have been stopped before it wrote its first record
        assert [i.site for i in truth] in (["a", "b"], ["b"]), truth
        assert truth[-1].end is None and all(i.end is not None for i in truth[:-1]), truth
        # The move's rows for split-brain-allowed: b's copy runs (its driver says so) before
        # a is told to stop. "Runs" is the driver's word: the copy's own first record may
        # come later (an interpreter starting), so the records may show a short gap.
        events = watch.history()
        running = next(e.mono for e in events if e.site == "b" and e.kind == "driver-running")
        stop = next(e.mono for e in events if e.site == "a" and e.kind == "stop")
        assert running < stop, watch.tail()
