"""The site's data_dir is private: directories 0700, files 0600, no symlink followed.

The data_dir holds the journal (every decision, with tokens), the fence deadlines that
decide whether a copy may act, workload logs and the nats-server's store and config
(credentials, once the mesh is locked). Another local user who could read these learns the
mesh; one who could write or plant a symlink there could extend a deadline or make the agent
overwrite a file of its choosing. Stdlib only (and `guard`, a leaf), so every layer and the
tether process may use it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from harmony.guard import atomic_write

__all__ = ["NotOurs", "atomic_write", "open_private_append", "private_dir", "secure_data_dir"]

_APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


class NotOurs(Exception):
    """A data_dir owned by another user: whoever owns it could change what the agent reads."""

    def __init__(self, path: Path, uid: int) -> None:
        self.path, self.uid = path, uid
        super().__init__(
            f"{path} is owned by uid {uid}, not by this agent's uid {os.geteuid()}: "
            "refusing to use it (its owner could plant fence deadlines or symlinks); "
            "chown it to this user or choose another data_dir"
        )


def private_dir(path: str | Path) -> Path:
    """`path` as a directory, created 0700 with every missing parent (existing parents are
    left alone), and tightened to 0700 when it is ours and group/other may enter it."""
    path = Path(path)
    missing: list[Path] = []
    p = path
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made alongside us: checked below
            os.mkdir(d, 0o700)
    tighten(path)
    return path


def tighten(path: Path) -> int | None:
    """Make a directory of ours 0700; its old mode if it was more open, else None."""
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(20, "Not a directory", str(path))
    if st.st_uid != os.geteuid() or not st.st_mode & 0o077:
        return None
    os.chmod(path, 0o700)
    return stat.S_IMODE(st.st_mode)


def secure_data_dir(path: str | Path) -> str | None:
    """Create or check the data_dir: refuse one owned by another user (`NotOurs`), tighten
    one that group or others may use. Returns a note to log when it had to tighten."""
    path = Path(path)
    if not os.path.lexists(path):
        private_dir(path)
        return None
    uid = os.stat(path).st_uid
    if uid != os.geteuid():
        raise NotOurs(path, uid)
    old = tighten(path)
    if old is None:
        return None
    return f"data_dir {path} was mode {old:04o} (group/other access): tightened to 0700"


def open_private_append(path: str | Path) -> int:
    """A descriptor appending to `path`, created 0600; a symlink at `path` is refused
    (ELOOP), never followed. An existing file of ours readable by others is made 0600."""
    fd = os.open(path, _APPEND_FLAGS, 0o600)
    try:
        st = os.fstat(fd)
        if st.st_uid == os.geteuid() and st.st_mode & 0o077:
            os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    return fd
