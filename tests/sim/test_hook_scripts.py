"""The simulation's hook scripts against real processes: start a daemon, probe, stop, fence,
and every flag file that makes one of them misbehave."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.waiting import wait_until

from harmony.actors.drivers.containment import CONTAINMENT_ENV
from harmony.sim import hook_scripts
from harmony.sim.freeze import proc_state

HOOKS = [sys.executable, "-m", "harmony.sim.hook_scripts"]
IGNORES_TERM = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)",
]


@pytest.fixture
def hooks(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    d = tmp_path / "hooks"
    env = {
        **os.environ,
        "HARMONY_WORKLOAD": "ledger",
        "HARMONY_SITE": "a",
        CONTAINMENT_ENV: f"a.test{os.getpid()}.ledger",
        "HARMONY_HOOK": "start",
        "HARMONY_REASON": "test",
    }
    yield d, env
    pid_file = d / "ledger.pid"
    with contextlib.suppress(OSError, ValueError, ProcessLookupError):
        os.killpg(int(pid_file.read_text().split()[0]), signal.SIGKILL)


def hook(
    action: str, d: Path, env: dict[str, str], *extra: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    # Output into a file, as the driver does: the daemon keeps the start hook's stdout, so
    # a pipe would not end with the hook.
    argv = [*HOOKS, action, "--dir", str(d), *extra]
    out = d.parent / f"{action}.out"
    with open(out, "w+") as f:
        code = subprocess.run(argv, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=timeout)
    return subprocess.CompletedProcess(argv, code.returncode, out.read_text(), "")


def daemon_pid(d: Path) -> int:
    return int((d / "ledger.pid").read_text().split()[0])


def gone(pid: int) -> bool:
    return proc_state(pid) in ("", "Z")


def test_the_marker_name_matches_the_containment_module() -> None:
    assert hook_scripts.CONTAINMENT_ENV == CONTAINMENT_ENV


def test_start_probe_stop_on_a_real_daemon(hooks: tuple[Path, dict[str, str]]) -> None:
    d, env = hooks
    assert hook("probe", d, env).returncode == 1  # nothing runs yet
    out = hook("start", d, env)
    assert out.returncode == 0, out.stdout + out.stderr
    pid = daemon_pid(d)
    assert not gone(pid)
    assert os.getsid(pid) == pid  # a daemon in a session of its own
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert f"{CONTAINMENT_ENV}={env[CONTAINMENT_ENV]}".encode() in environ
    assert not [e for e in environ if e.startswith((b"HARMONY_HOOK=", b"HARMONY_REASON="))]
    assert hook("probe", d, env).returncode == 0
    again = hook("start", d, env)
    assert again.returncode == 1 and "already runs" in again.stdout
    assert daemon_pid(d) == pid
    assert hook("stop", d, env).returncode == 0
    assert gone(pid)  # stop returns once the copy is gone, not before
    assert hook("probe", d, env).returncode == 1
    assert hook("stop", d, env).returncode == 0  # idempotent
    assert hook("fence", d, env).returncode == 0


def test_flags_make_each_hook_misbehave(hooks: tuple[Path, dict[str, str]]) -> None:
    d, env = hooks
    d.mkdir(parents=True)
    (d / "start-fail").touch()
    out = hook("start", d, env)
    assert out.returncode == 1 and not (d / "ledger.pid").exists()
    (d / "start-fail").unlink()
    assert hook("start", d, env).returncode == 0
    pid = daemon_pid(d)

    (d / "probe-fail").touch()
    assert hook("probe", d, env).returncode == 1 and not gone(pid)
    (d / "probe-fail").unlink()
    assert hook("probe", d, env).returncode == 0

    (d / "stop-fail").touch()
    assert hook("stop", d, env).returncode == 1
    assert not gone(pid)  # exited 1 without stopping anything
    (d / "stop-fail").unlink()

    (d / "fence-hang").touch()
    with pytest.raises(subprocess.TimeoutExpired):
        hook("fence", d, env, timeout=3)  # subprocess.run kills the hung hook
    assert not gone(pid)
    assert hook("stop", d, env).returncode == 0  # the flag hangs fence only
    assert gone(pid)


def test_stop_escalates_to_sigkill(hooks: tuple[Path, dict[str, str]]) -> None:
    d, env = hooks
    assert hook("start", d, env, "--", *IGNORES_TERM).returncode == 0
    pid = daemon_pid(d)
    wait_until(lambda: "signal" in Path(f"/proc/{pid}/cmdline").read_text(), 10)
    out = hook("fence", d, env)
    assert out.returncode == 0, out.stdout
    assert gone(pid)


def test_a_reused_pid_is_not_taken_for_the_copy(hooks: tuple[Path, dict[str, str]]) -> None:
    d, env = hooks
    d.mkdir(parents=True)
    # This test's own pid with a wrong start time: the copy is gone, this process is not it.
    (d / "ledger.pid").write_text(f"{os.getpid()} 1\n")
    assert hook("probe", d, env).returncode == 1
    assert hook("stop", d, env).returncode == 0


def test_hooks_do_their_job_when_their_log_is_on_a_full_disk(
    hooks: tuple[Path, dict[str, str]],
) -> None:
    d, env = hooks

    def full(action: str) -> int:
        # A quiet daemon: this is about the hooks (the workload's own output is its business).
        argv = [*HOOKS, action, "--dir", str(d), "--", *IGNORES_TERM]
        with open("/dev/full", "w") as f:  # every write: ENOSPC
            return subprocess.run(argv, env=env, stdout=f, stderr=f, timeout=30).returncode

    assert full("start") == 0
    pid = daemon_pid(d)
    assert full("probe") == 0
    assert full("fence") == 0
    assert gone(pid)
