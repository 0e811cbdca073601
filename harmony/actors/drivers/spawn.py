"""Spawning helpers: resolving a command up front, and processes that die with the agent.

`resolve` gives the clear "command not found" error before anything is started (through a
keeper or setpriv, a missing command would only be an exit status).

`spawn_tied` starts a process through `setpriv --pdeathsig KILL` (util-linux): the kernel
kills it when the thread that started it dies. That thread is the one spawner thread below,
which lives as long as the agent process: a `preexec_fn` would be unsafe with threads, and
a per-call thread would die (and take the child with it) right after the spawn. It is for
helpers that must never outlive the agent (an embedded server, say). Workload copies must
NOT use it: a copy killed with its agent is a copy nobody confirmed stopped, and its
grandchildren would outlive it anyway. Copies run under the keeper (`tether`), which fences
them itself when the agent dies.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import subprocess
import sys
from typing import Any

_spawner = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="spawner")
_setpriv = shutil.which("setpriv") if sys.platform == "linux" else None


def resolve(argv0: str, cwd: str | None, env: dict[str, str]) -> str:
    """The executable `argv0` names, as the kernel would find it; FileNotFoundError if none.

    Needed up front because through setpriv a missing command is setpriv's exit status,
    not the clear OSError callers report.
    """
    if os.sep in argv0:
        path = argv0 if os.path.isabs(argv0) else os.path.join(cwd or os.getcwd(), argv0)
        if os.path.isfile(path):
            if not os.access(path, os.X_OK):
                raise PermissionError(13, "Permission denied", argv0)
            return argv0
        raise FileNotFoundError(2, "No such file or directory", argv0)
    found = shutil.which(argv0, path=env.get("PATH", os.defpath))
    if found is None:
        raise FileNotFoundError(2, "No such file or directory", argv0)
    return found


def spawn_tied(argv: list[str], **popen: Any) -> subprocess.Popen[bytes]:
    """`subprocess.Popen(argv, **popen)`, killed by the kernel if this process dies."""
    env = popen.get("env") or dict(os.environ)
    cwd = popen.get("cwd")
    if cwd is not None and not os.path.isdir(cwd):
        raise FileNotFoundError(2, "No such file or directory", cwd)
    resolve(argv[0], cwd, env)
    full = [_setpriv, "--pdeathsig", "KILL", "--", *argv] if _setpriv else argv

    def run() -> subprocess.Popen[bytes]:
        return subprocess.Popen(full, **popen)

    return _spawner.submit(run).result()
