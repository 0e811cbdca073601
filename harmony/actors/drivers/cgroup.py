"""A cgroup v2 directory per workload: the kernel's own list of every process of a copy.

The environment marker (see `containment`) finds every process that kept its environment;
a cgroup also holds those that cleared it, and its ``cgroup.kill`` (Linux >= 5.14) kills
them all at once, forks in flight included. The agent creates the workload's cgroup below
its own (``<v2 mount><agent cgroup>/harmony-<containment id>``) when it may: a restarted
agent computes the same path and finds what its predecessor left there. Where there is no
writable cgroup v2 (a v1-only host, a read-only /sys in a container) every function here
answers "unavailable" and the marker plus the keeper's subreaper are the containment.
"""

from __future__ import annotations

import os
import time

from harmony.frozen import Frozen

TYPE_CHECKING = False  # not `typing`'s: a copy's keeper loads this module (see `frozen`)
if TYPE_CHECKING:
    from os import PathLike
    from pathlib import Path

PREFIX = "harmony-"
"""Name prefix of the cgroups the agent creates (``harmony-<containment id>``)."""
FREEZE_WAIT = 1.0
"""How long to wait for a cgroup to report itself frozen before killing into it anyway."""


def v2_root() -> str | None:
    """Where the cgroup v2 hierarchy holding this process's cgroup is mounted, or None.

    The path of the mount corresponds to the mount's root inside the hierarchy (in a cgroup
    namespace, or with a bind mount, that is not the hierarchy's root): `cgroup_dir` strips it.
    """
    found = _v2_mount()
    return found[0] if found else None


def _v2_mount() -> tuple[str, str] | None:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and tail[:1] == ["cgroup2"]:
            return os.path.normpath(_unescape(fields[4])), _unescape(fields[3])
    return None


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    parts = field.split("\\")
    out = [parts[0]]
    for part in parts[1:]:
        code = part[:3]
        if len(code) == 3 and all(c in "01234567" for c in code):
            out.append(chr(int(code, 8)) + part[3:])
        else:
            out.append("\\" + part)
    return "".join(out)


def own_cgroup(pid: int | str = "self") -> str | None:
    """The cgroup v2 path of a process (``/`` for the root), None without cgroup v2."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            return line[3:] or "/"
    return None


def cgroup_dir(cgroup_path: str) -> str | None:
    """The directory of cgroup `cgroup_path` (as /proc/PID/cgroup names it), or None."""
    mount = _v2_mount()
    if mount is None:
        return None
    where, root = mount
    rel = cgroup_path
    if root not in ("", "/"):
        if rel != root and not rel.startswith(root.rstrip("/") + "/"):
            return None  # outside what this mount shows
        rel = rel[len(root.rstrip("/")) :]
    return os.path.normpath(os.path.join(where, rel.lstrip("/")))


def cgroup_name(containment: str) -> str:
    """The directory name for a containment id (ids are config names, dots and hex; anything
    else is replaced, so the name is always one safe path component)."""
    return PREFIX + "".join(c if c in _SAFE else "_" for c in containment)[:200]


_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


class Cgroup(Frozen):
    """One cgroup v2 directory. Methods raise OSError unless they say otherwise.

    Built from a str or a `pathlib.Path`; kept as a str (the keeper loads no `pathlib`):
    `path` gives it as a Path. Two cgroups of the same directory are equal.
    """

    __slots__ = ("_dir",)
    _dir: str

    def __init__(self, path: str | PathLike[str]) -> None:
        self._set(_dir=os.path.normpath(os.fspath(path)))

    @property
    def path(self) -> Path:
        from pathlib import Path  # not in the keeper, which uses the str

        return Path(self._dir)

    def __repr__(self) -> str:
        return f"Cgroup({self._dir!r})"

    @classmethod
    def for_workload(cls, containment: str) -> tuple[Cgroup | None, str]:
        """The workload's cgroup below this process's own, or (None, why not).

        Nothing is created here (see `create`); a directory that exists already (left by an
        earlier incarnation) is returned as it is.
        """
        own = own_cgroup()
        if own is None:
            return None, "no cgroup v2 on this host"
        parent = cgroup_dir(own)
        if parent is None or not os.path.exists(os.path.join(parent, "cgroup.procs")):
            return None, f"cgroup v2 of this process ({own}) is not mounted here"
        path = os.path.join(parent, cgroup_name(containment))
        if not os.path.isdir(path) and not os.access(parent, os.W_OK):
            return None, f"cgroup {parent} is not writable"
        return cls(path), ""

    def __str__(self) -> str:
        return self._dir

    def _file(self, name: str) -> str:
        return os.path.join(self._dir, name)

    def exists(self) -> bool:
        return os.path.exists(self._file("cgroup.procs"))

    def create(self) -> None:
        try:
            os.mkdir(self._dir)
        except FileNotFoundError:
            raise
        except OSError:  # as pathlib's mkdir(exist_ok=True)
            if not os.path.isdir(self._dir):
                raise

    def procs(self) -> list[int]:
        """Pids in the cgroup (zombies included: callers check); [] when it does not exist."""
        try:
            text = _read(self._file("cgroup.procs"))
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def holds(self, pid: int | str = "self") -> bool:
        own = own_cgroup(pid)
        return own is not None and cgroup_dir(own) == self._dir

    def enter(self, pid: int = 0) -> None:
        """Move process `pid` (0: the caller) into this cgroup; its later children follow."""
        _write(self._file("cgroup.procs"), str(pid))

    def leave(self, pid: int = 0) -> None:
        """Move process `pid` (0: the caller) to the parent cgroup, out of `kill`'s reach."""
        _write(os.path.join(os.path.dirname(self._dir), "cgroup.procs"), str(pid))

    def kill(self) -> bool:
        """SIGKILL every process in the cgroup (the kernel's walk misses no fork).
        False where ``cgroup.kill`` does not exist (Linux < 5.14)."""
        f = self._file("cgroup.kill")
        if not os.path.exists(f):
            return False
        _write(f, "1")
        return True

    def freeze(self, frozen: bool) -> bool:
        """Freeze (or thaw) the cgroup; a frozen process forks no more, but still dies of
        SIGKILL. Freezing waits up to FREEZE_WAIT for the kernel to confirm. False where
        ``cgroup.freeze`` does not exist (Linux < 5.2)."""
        f = self._file("cgroup.freeze")
        if not os.path.exists(f):
            return False
        _write(f, "1" if frozen else "0")
        end = time.monotonic() + FREEZE_WAIT
        while frozen and self._event("frozen") != 1 and time.monotonic() < end:
            time.sleep(0.01)
        return True

    def populated(self) -> bool:
        return self._event("populated") == 1

    def _event(self, key: str) -> int | None:
        try:
            text = _read(self._file("cgroup.events"))
        except OSError:
            return None
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
        return None

    def remove(self) -> bool:
        """Remove the directory if it is empty; False (no exception) otherwise."""
        try:
            os.rmdir(self._dir)
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return True


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
