"""A site's data_dir on a small tmpfs, filled on purpose: the disk-full fault.

The simulation mounts a tmpfs of the scenario's ``data_dir_size`` on the site's data_dir
before the site starts (its journal, workload logs and nats-server store live there, as on
a real machine whose one disk fills up), fills it with one file until the kernel answers
ENOSPC, and removes the file again on `free-disk`. Mounting needs root (CAP_SYS_ADMIN);
`mount_unavailable` says why it is impossible here, so the scenario can be skipped.

Filling leaves no free page, but a file's last page may still have room: a journal can
append up to a page (a few events) before its writes fail too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from harmony.sim.scenario import Scenario

FILL_NAME = ".harmony-sim-fill"
CHUNKS = (1 << 20, 1 << 12, 1)


class DiskError(RuntimeError):
    """A mount or unmount the simulation needs did not work."""


def _run(argv: list[str]) -> str:
    """ "" on success, else what went wrong."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    return "" if out.returncode == 0 else (out.stderr or out.stdout).strip() or "failed"


def mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    problem = _run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "harmony-sim", str(path)]
    )
    if problem:
        raise DiskError(f"cannot mount a {size} tmpfs on {path}: {problem}")


def is_mount(path: Path) -> bool:
    target = str(path.resolve())
    try:
        with open("/proc/self/mounts") as f:
            return any(line.split()[1] == target for line in f if len(line.split()) > 1)
    except OSError:
        return os.path.ismount(path)


def unmount(path: Path) -> None:
    """Unmount, lazily if something still holds a file there (a stray is reported
    elsewhere; the mount must never outlive the run)."""
    if not is_mount(path):
        return
    if _run(["umount", str(path)]) and _run(["umount", "-l", str(path)]):
        raise DiskError(f"cannot unmount {path}")


def mount_unavailable() -> str:
    """ "" when this process can mount a tmpfs, else why not (try it on a scratch dir)."""
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "no mount/umount command"
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root (CAP_SYS_ADMIN)"
    with tempfile.TemporaryDirectory(prefix="harmony-mount-probe-") as d:
        problem = _run(["mount", "-t", "tmpfs", "-o", "size=64K", "harmony-sim", d])
        if problem:
            return f"mounting a tmpfs failed: {problem}"
        if _run(["umount", d]):
            _run(["umount", "-l", d])
    return ""


def fill(path: Path) -> int:
    """Write one file into `path`'s file system until ENOSPC, down to single bytes;
    returns how many bytes it took."""
    written = 0
    fd = os.open(path / FILL_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for chunk in CHUNKS:
            block = b"\0" * chunk
            while True:
                try:
                    n = os.write(fd, block)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
                written += n
                if n < chunk:
                    break
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
    return written


def free(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (path / FILL_NAME).unlink()


def unrunnable(scenario: Scenario) -> str:
    """Why this machine cannot run `scenario` at all ("" when it can): the caller skips it
    with that reason, except under CI=true, where a skip would hide a missing fault."""
    if scenario.data_dir_size:
        reason = mount_unavailable()
        if reason:
            return f"data_dir_size needs a tmpfs mount: {reason}"
    return ""


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"
