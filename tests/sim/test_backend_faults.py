"""The process backend's new faults on a real mesh: freeze/thaw stop and continue the right
processes of a site (states read from /proc), fill-disk fills the site's own tmpfs, flags
land where the hook scripts read them, and stop() leaves no process and no mount."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from support.waiting import wait_until

from harmony.actors.drivers.containment import scan_marked
from harmony.sim import disk
from harmony.sim.backend import ProcessBackend, hook_dir, pids_with_env, sim_marker
from harmony.sim.freeze import agent_side, proc_state
from harmony.sim.launch import pids_mentioning
from harmony.sim.runner import under_ci
from harmony.sim.scenario_file import parse_scenario

pytestmark = pytest.mark.mesh

SCENARIO = """
name = "backend-faults"
sites = ["a", "b", "c"]
{disk}
[[workloads]]
name = "ledger"
primary = "a"
standbys = ["b", "c"]
"""


def processes(backend: ProcessBackend, site: str) -> dict[str, list[int]]:
    """The site's agent, server, harmony helpers and workload processes."""
    cids = [cid for (s, _), cid in backend.containments().items() if s == site]
    marked = [p for cid, ps in scan_marked().items() if cid in cids for p in ps]
    proc = backend.mesh.procs[site].proc
    assert proc is not None
    return {
        "agent": [proc.pid],
        "server": backend.mesh.server_pids(site),
        "helpers": [p.pid for p in marked if agent_side(p)],
        "workload": [p.pid for p in marked if not agent_side(p)],
    }


def frozen(procs: dict[str, list[int]]) -> set[str]:
    """Kinds whose processes are all stopped (T), and a check that none is half stopped."""
    out = set()
    for kind, pids in procs.items():
        states = {proc_state(p) == "T" for p in pids}
        assert len(states) <= 1, f"{kind}: some stopped, some not"
        if states == {True}:
            out.add(kind)
    return out


def test_freeze_flags_and_disk_on_a_real_mesh(tmp_path: Path) -> None:
    mount = disk.mount_unavailable()
    if mount and under_ci():
        pytest.fail(f"CI=true and no tmpfs mount: {mount}")
    sized = "" if mount else 'data_dir_size = { a = "8M" }'
    sc = parse_scenario(SCENARIO.format(disk=sized))
    workdir = (tmp_path / "run").resolve()
    backend = ProcessBackend(sc, workdir, truth=workdir)
    try:
        backend.start(90)
        wait_until(
            lambda: processes(backend, "a")["workload"] and processes(backend, "a")["helpers"],
            60,
            message="no workload with its tether on a",
        )
        procs = processes(backend, "a")

        backend.freeze("a", "agent+tether")
        wait_until(lambda: frozen(procs) == {"agent", "helpers"}, 10)
        backend.thaw("a")
        wait_until(lambda: frozen(procs) == set(), 10)

        backend.freeze("a", "site")
        wait_until(lambda: frozen(procs) == {"agent", "server", "helpers", "workload"}, 10)
        with pytest.raises(ValueError, match="frozen already"):
            backend.freeze("a", "agent")
        backend.thaw("a")
        wait_until(lambda: frozen(procs) == set(), 10)

        assert backend.set_flag("a", "probe-fail", True)
        assert not backend.set_flag("a", "probe-fail", True)
        assert (hook_dir(workdir, "a") / "probe-fail").exists()

        if not mount:
            data = workdir / "a"
            assert disk.is_mount(data)
            assert backend.fill_disk("a") > 4 << 20
            with pytest.raises(OSError) as e, open(data / "more", "w") as f:
                f.write("x" * 10_000)
            assert e.value.errno == errno.ENOSPC
            backend.free_disk("a")
    finally:
        backend.stop()
    assert backend.leftovers() == []
    assert pids_mentioning(str(workdir)) == [] and pids_with_env(sim_marker(workdir)) == []
    assert not (hook_dir(workdir, "a") / "probe-fail").exists()
    assert not disk.is_mount(workdir / "a")
    assert (workdir / "records").is_dir()
