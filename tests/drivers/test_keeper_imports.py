"""A copy's keeper is one process per copy (a thousand on a machine running a big mesh): it
loads the containment modules only, not the drivers, the config or the strategies (the
package's names load on first use), and of the standard library nothing heavy: no
dataclasses (inspect), pathlib, subprocess, argparse, typing, re or sqlite3."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from support.waiting import wait_until

import harmony.actors.drivers as drivers
from harmony.actors.drivers.tether import tether_argv
from harmony.actors.drivers.tether_cli import quick_parse
from harmony.actors.drivers.tether_main import KEEPER_OPTIONS, parse

ROOT = str(Path(__file__).resolve().parents[2])
HEAVY_STDLIB = ("dataclasses", "inspect", "pathlib", "subprocess", "argparse", "typing", "re")
HEAVY_STDLIB += ("sqlite3", "ctypes.util", "hashlib", "random", "shutil")


def keeper_modules(code: str = "pass") -> set[str]:
    """The modules loaded by importing the keeper (then running `code`), in an interpreter
    that loads nothing else (-S: no site, whose .pth files load pathlib and re)."""
    script = (
        f"import sys; sys.path.insert(0, {ROOT!r}); import harmony.actors.drivers.tether_main;"
        f"{code}\nprint(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_the_keeper_loads_no_driver_config_or_strategy() -> None:
    heavy = ("harmony.config", "harmony.strategies", "harmony.actors.drivers.process")
    heavy += ("harmony.actors.drivers.hooks", "msgspec", "pykka")
    loaded = keeper_modules()
    assert not [m for m in loaded if m.startswith(heavy)]


def test_the_keeper_loads_nothing_heavy_of_the_standard_library() -> None:
    loaded = keeper_modules()
    assert "harmony.actors.drivers.containment" in loaded and "harmony.guard" in loaded
    assert sorted(loaded & set(HEAVY_STDLIB)) == []


def test_the_keepers_own_argv_is_read_without_argparse() -> None:
    argv = tether_argv(["sleep", "1"], containment="s.x.w", agent_pid=1, grace=1.5, token=3)
    code = f"from harmony.actors.drivers.tether_main import parse; parse({argv[3:]!r})"
    assert "argparse" not in keeper_modules(code)


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"cgroup": "/sys/fs/cgroup/x", "cwd": "/tmp", "deadline_file": "/d/3.deadline"},
        {"journal": "/j", "site": "", "workload": "w", "incarnation": "i", "token": 0},
    ],
)
def test_the_quick_parser_reads_what_argparse_reads(extra: dict[str, object]) -> None:
    argv = tether_argv(
        ["sh", "-c", "echo --x -- y"], containment="s.x.w", agent_pid=42, grace=0.5, **extra
    )[3:]
    quick = quick_parse(argv, KEEPER_OPTIONS)
    assert quick is not None
    full = parse([*argv[:2], "--agent-pid=42", *argv[4:]])  # not quick: argparse reads it
    assert vars(quick) == vars(full) and quick.command == ["sh", "-c", "echo --x -- y"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--containment", "x"],
        ["--containment", "x", "--"],
        ["--agent-pid", "1", "--", "true"],
        ["--containment", "x", "--agent-pid", "abc", "--", "true"],
        ["--containment", "x", "--grace", "-1", "--", "true"],
        ["--contain", "x", "--", "true"],
        ["--containment=x", "--", "true"],
        ["--containment", "x", "--bogus", "1", "--", "true"],
    ],
)
def test_anything_else_goes_to_argparse(argv: list[str]) -> None:
    assert quick_parse(argv, KEEPER_OPTIONS) is None


def test_bad_arguments_get_argparses_message() -> None:
    run = [sys.executable, "-m", "harmony.actors.drivers.tether_main", "--containment", "x"]
    out = subprocess.run([*run, "--agent-pid", "abc", "--", "true"], capture_output=True, text=True)
    assert out.returncode == 2 and "argument --agent-pid: invalid int value: 'abc'" in out.stderr
    out = subprocess.run([*run, "--"], capture_output=True, text=True)
    assert out.returncode == 2 and "error: no COMMAND after --" in out.stderr


def uss_of(argv: list[str], ready: str) -> float:
    """USS (MB) of a process of `argv` once its child runs `ready`."""
    proc = subprocess.Popen(argv)
    ps = psutil.Process(proc.pid)
    children: list[psutil.Process] = []

    def child_runs() -> bool:
        try:
            children[:] = ps.children()
            return any(c.cmdline()[:1] == [ready] for c in children)
        except psutil.Error:
            return False

    try:
        wait_until(child_runs, 30, f"{ready} runs")
        return ps.memory_full_info().uss / 2**20
    finally:
        for child in children:  # the keeper then ends as its COMMAND did
            child.kill()
        try:
            proc.wait(10)
        finally:
            proc.kill()
            proc.wait()


def test_a_keeper_uses_little_memory() -> None:
    """Measured on the development host: 10.1 MB USS before the keeper shed its heavy
    imports, 5.5 MB after, of which 4.6 MB a bare interpreter (with the venv's site, whose
    .pth files load pathlib and re) uses: the bound is on what the keeper adds to it."""
    keeper = tether_argv(
        ["sleep", "30"], containment=f"uss.{os.getpid()}", agent_pid=os.getpid(), grace=1.0
    )
    bare = [sys.executable, "-c", "import subprocess; subprocess.Popen(['sleep', '30']).wait()"]
    added = uss_of(keeper, "sleep") - uss_of(bare, "sleep")
    assert added < 2.0, f"the keeper uses {added:.1f} MB more than a bare interpreter"


def test_every_package_name_loads_on_first_use() -> None:
    for name in drivers.__all__:
        assert getattr(drivers, name) is not None
    assert sorted(drivers.__all__) == sorted(drivers._WHERE)


AGENT = """
import subprocess, sys
keeper = subprocess.Popen(sys.argv[2:], stdout=subprocess.PIPE, stderr=open(sys.argv[1], "w"))
print(keeper.pid, flush=True)
keeper.stdout.readline()  # COMMAND runs: the agent dies, its keeper fences
"""


def ended(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # orphaned: init reaps
    except psutil.NoSuchProcess:
        return True


def test_a_fence_imports_nothing_until_it_is_done(tmp_path: Path) -> None:
    """The fence deadline's slack is 0.5 s: a fence must never wait for an import. Only
    the journal line, written after the fence, may import (`-X importtime` lists each)."""
    log = tmp_path / "keeper.err"
    command = ["sh", "-c", "echo up; exec sleep 30"]
    keeper = tether_argv(command, containment=f"imp.{os.getpid()}", agent_pid=0, grace=1.0)
    keeper = [keeper[0], "-X", "importtime", *keeper[1:]]
    i = keeper.index("--agent-pid")
    del keeper[i : i + 2]  # the agent is the keeper's parent
    agent = subprocess.run(
        [sys.executable, "-c", AGENT, str(log), *keeper], capture_output=True, text=True, timeout=60
    )
    assert agent.returncode == 0, agent.stderr
    keeper_pid = int(agent.stdout)
    wait_until(lambda: ended(keeper_pid), 30, "the keeper fenced and ended")
    lines = log.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "fencing the workload" in line)
    end = next(i for i, line in enumerate(lines) if "terminated by SIGTERM in" in line)
    assert start < end and [x for x in lines[start:end] if x.startswith("import time:")] == []
